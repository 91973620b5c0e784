package restapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
)

const testPeerID = "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw"

type testServer struct {
	url   string
	store *localstore.Store
	pins  *pinner.Store
	srv   *Server
}

// startServer runs a real Server on a random 127.0.0.1 port.
func startServer(t *testing.T, mutate ...func(*Config)) *testServer {
	t.Helper()
	store, err := localstore.Open(t.TempDir(), localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	pins := pinner.NewStore(store.Datastore(), pinner.StoreOptions{})
	cfg := Config{PeerID: testPeerID, Store: store, Pins: pins, Pool: pool, Events: slog.New(slog.DiscardHandler)}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		pool.Stop()
		store.Close()
	})
	return &testServer{url: "http://" + ln.Addr().String(), store: store, pins: pins, srv: srv}
}

type part struct {
	name, contentType string
	body              []byte
}

// body builds a multipart upload as the cluster Go client does.
func body(parts ...part) (string, []byte) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{fmt.Sprintf(`form-data; name="file"; filename="%s"`, url.QueryEscape(p.name))}
		ct := p.contentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		h["Content-Type"] = []string{ct}
		pw, _ := w.CreatePart(h)
		pw.Write(p.body)
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

type addResult struct {
	status  int
	header  http.Header
	outputs []map[string]any
	trailer string
	// trailerDeclared: the response announced "Trailer: X-Stream-Error"
	// (net/http moves it from the header to the Trailer map's keys).
	trailerDeclared bool
	raw             []byte
}

// post sends the body chunked (no Content-Length), as the Go client does.
func post(t *testing.T, ts *testServer, query, contentType string, b []byte) addResult {
	t.Helper()
	pr, pw := io.Pipe()
	go func() { pw.Write(b); pw.Close() }()
	req, _ := http.NewRequest("POST", ts.url+"/add?"+query, pr)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	_, declared := resp.Trailer["X-Stream-Error"]
	r := addResult{status: resp.StatusCode, header: resp.Header, raw: raw, trailer: resp.Trailer.Get("X-Stream-Error"), trailerDeclared: declared}
	if resp.StatusCode == 200 && !strings.HasPrefix(string(raw), "[") {
		dec := json.NewDecoder(bytes.NewReader(raw))
		for {
			var m map[string]any
			if err := dec.Decode(&m); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("bad stream %q: %v", raw, err)
			}
			r.outputs = append(r.outputs, m)
		}
	}
	return r
}

func kuboHash(t *testing.T, files map[string][]byte, flags []string, paths ...string) map[string]string {
	t.Helper()
	repo := kubotest.NewRepo(t)
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]string{}
	for _, e := range repo.AddOnlyHash(t, dir, flags, paths...) {
		out[e.Name] = e.Hash
	}
	return out
}

// expectNoPins fails the test unless the pinset is empty (GET /allocations
// answers 204): what every failed add must leave behind.
func expectNoPins(t *testing.T, ts *testServer, why string) {
	t.Helper()
	resp, err := http.Get(ts.url + "/allocations")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("%s: pinset not empty: GET /allocations = %d", why, resp.StatusCode)
	}
}

func getJSON(t *testing.T, u string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("GET %s: %q: %v", u, b, err)
		}
	}
	return resp.StatusCode, m
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestAddFileStreamsOutputAndPins(t *testing.T) {
	ts := startServer(t)
	data := randBytes(3<<20+17, 1)
	want := kuboHash(t, map[string][]byte{"big.bin": data}, nil, "big.bin")
	ct, b := body(part{name: "big.bin", body: data})
	r := post(t, ts, "name=mypin&meta-owner=alice&progress=false", ct, b)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.raw)
	}
	if r.header.Get("X-Chunked-Output") != "1" || !r.trailerDeclared {
		t.Fatalf("missing stream headers: %v", r.header)
	}
	if r.trailer != "" {
		t.Fatalf("trailer error on success: %q", r.trailer)
	}
	if len(r.outputs) != 1 {
		t.Fatalf("outputs: %v", r.outputs)
	}
	o := r.outputs[0]
	if o["name"] != "big.bin" || o["cid"] != want["big.bin"] {
		t.Fatalf("got %v, kubo says %s", o, want["big.bin"])
	}
	if _, ok := o["size"].(float64); !ok {
		t.Fatalf("size must be a JSON number: %v", o)
	}
	if a, _ := o["allocations"].([]any); len(a) != 1 || a[0] != testPeerID {
		t.Fatalf("allocations: %v", o["allocations"])
	}
	root, _ := cid.Decode(want["big.bin"])
	if ok, _ := ts.store.Has(context.Background(), root); !ok {
		t.Fatal("root block not stored")
	}
	code, pin := getJSON(t, ts.url+"/allocations/"+want["big.bin"])
	if code != 200 || pin["cid"] != want["big.bin"] || pin["name"] != "mypin" || pin["type"] != "pin" {
		t.Fatalf("pin: %d %v", code, pin)
	}
	if m, _ := pin["metadata"].(map[string]any); m["owner"] != "alice" {
		t.Fatalf("metadata: %v", pin["metadata"])
	}
}

func TestAddDirectoryOrderAndWrap(t *testing.T) {
	ts := startServer(t)
	files := map[string][]byte{"dir1/a.txt": []byte("aaa\n"), "dir1/sub/b.txt": []byte("bbb\n"), "hello.txt": []byte("hello world\n")}
	want := kuboHash(t, files, []string{"-r", "-w"}, "dir1", "hello.txt")
	ct, b := body(
		part{name: "dir1", contentType: "application/x-directory"},
		part{name: "dir1/a.txt", body: files["dir1/a.txt"]},
		part{name: "dir1/sub", contentType: "application/x-directory"},
		part{name: "dir1/sub/b.txt", body: files["dir1/sub/b.txt"]},
		part{name: "hello.txt", body: files["hello.txt"]},
	)
	r := post(t, ts, "wrap-with-directory=true", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("status %d trailer %q: %s", r.status, r.trailer, r.raw)
	}
	var names []string
	for _, o := range r.outputs {
		names = append(names, o["name"].(string))
		if o["cid"] != want[o["name"].(string)] {
			t.Errorf("%q: got %v, kubo %s", o["name"], o["cid"], want[o["name"].(string)])
		}
	}
	// Files in upload order, then directories children first, then the wrapper.
	wantNames := []string{"dir1/a.txt", "dir1/sub/b.txt", "hello.txt", "dir1/sub", "dir1", ""}
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Fatalf("order %q, want %q", names, wantNames)
	}
}

func TestAddBadInputKeepsServing(t *testing.T) {
	ts := startServer(t)
	ct, b := body(part{name: "f", body: []byte("x")})
	cases := []struct {
		name, query, ct string
		body            []byte
		status          int
		msg             string
	}{
		{"not multipart", "", "application/json", []byte(`{}`), 400, "request Content-Type isn't multipart/form-data"},
		{"zero parts", "", "multipart/form-data; boundary=xyz", []byte("--xyz--\r\n"), 400, "no files"},
		{"bad bool", "local=maybe", ct, b, 400, "parameter local invalid"},
		{"bad int", "cid-version=x", ct, b, 400, "parameter cid-version invalid"},
		{"bad layout", "layout=zigzag", ct, b, 400, "layout parameter is invalid"},
		{"bad format", "format=zip", ct, b, 400, "format parameter is invalid"},
		{"unknown hash", "hash=sha2-999", ct, b, 400, "hash function name not known"},
		{"bad chunker", "chunker=slices-9", ct, b, 400, "unrecognized chunker"},
		{"oversized chunker", "chunker=size-4194304", ct, b, 400, "may not exceed the maximum chunk size"},
		{"cidv0 with other hash", "cid-version=0&hash=sha2-512", ct, b, 400, "CIDv0 only supports sha2-256"},
		{"truncated body", "", ct, b[:len(b)/2], 400, "unexpected EOF"},
		{"expire-in too short", "expire-in=10ms", ct, b, 400, "expire-in duration too short"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for run := 0; run < 2; run++ {
				r := post(t, ts, c.query, c.ct, c.body)
				var e struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(r.raw, &e); err != nil {
					t.Fatalf("status %d, body %q is not an error object", r.status, r.raw)
				}
				if r.status != c.status || e.Code != c.status || !strings.Contains(e.Message, c.msg) {
					t.Fatalf("got %d %+v, want %d %q", r.status, e, c.status, c.msg)
				}
			}
			resp, err := http.Get(ts.url + "/health")
			if err != nil || resp.StatusCode != 204 {
				t.Fatalf("server not serving after bad input: %v %v", err, resp)
			}
			resp.Body.Close()
		})
	}
	expectNoPins(t, ts, "after failed adds")
}

// TestTruncatedAfterFirstFile cuts the body after a whole file was added:
// the error arrives in the trailer after the 200, and nothing is pinned.
func TestTruncatedAfterFirstFile(t *testing.T) {
	ts := startServer(t)
	ct, b := body(part{name: "d", contentType: "application/x-directory"}, part{name: "d/a", body: []byte("first")}, part{name: "d/b", body: randBytes(1<<20, 3)})
	cut := bytes.Index(b, []byte(`filename="d%2Fb"`)) + 200
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", ct, cut)
	conn.Write(b[:cut])
	conn.Write([]byte("\r\n"))
	// Stop sending; half-close so the server sees the end of the body.
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"name":"d/a"`) {
		t.Fatalf("status %d body %q", resp.StatusCode, raw)
	}
	if te := resp.Trailer.Get("X-Stream-Error"); te == "" {
		t.Fatalf("no trailer error for a truncated body; body %q", raw)
	}
	expectNoPins(t, ts, "truncated add")
}

func TestOnlyHashNoPinAndBuffered(t *testing.T) {
	ts := startServer(t)
	data := randBytes(600<<10, 2)
	want := kuboHash(t, map[string][]byte{"f": data}, []string{"--cid-version=1"}, "f")
	ct, b := body(part{name: "f", body: data})

	r := post(t, ts, "only-hash=true&cid-version=1", ct, b)
	if r.status != 200 || len(r.outputs) != 1 || r.outputs[0]["cid"] != want["f"] {
		t.Fatalf("only-hash: %d %v", r.status, r.outputs)
	}
	c, _ := cid.Decode(want["f"])
	if ok, _ := ts.store.Has(context.Background(), c); ok {
		t.Fatal("only-hash stored the root")
	}
	if code, _ := getJSON(t, ts.url+"/allocations/"+want["f"]); code != 404 {
		t.Fatalf("only-hash pinned: %d", code)
	}

	r = post(t, ts, "no-pin=true&cid-version=1", ct, b)
	if r.status != 200 || r.outputs[0]["cid"] != want["f"] {
		t.Fatalf("no-pin: %d %v", r.status, r.outputs)
	}
	if ok, _ := ts.store.Has(context.Background(), c); !ok {
		t.Fatal("no-pin did not store the blocks")
	}
	code, e := getJSON(t, ts.url+"/allocations/"+want["f"])
	if code != 404 || e["message"] != "pin is not part of the pinset" || e["code"] != float64(404) {
		t.Fatalf("no-pin pinned: %d %v", code, e)
	}

	r = post(t, ts, "stream-channels=false&cid-version=1&progress=true", ct, b)
	var arr []map[string]any
	if err := json.Unmarshal(r.raw, &arr); err != nil || r.status != 200 {
		t.Fatalf("buffered: %d %q", r.status, r.raw)
	}
	last := arr[len(arr)-1]
	if last["cid"] != want["f"] {
		t.Fatalf("buffered root %v, kubo %s", last, want["f"])
	}
	progress := 0
	for _, o := range arr[:len(arr)-1] {
		if o["cid"] != nil || o["bytes"] == nil {
			t.Fatalf("not a progress object: %v", o)
		}
		progress++
	}
	if progress < 2 || arr[len(arr)-2]["bytes"] != float64(len(data)) {
		t.Fatalf("progress objects: %v", arr)
	}
	if code, _ := getJSON(t, ts.url+"/allocations/"+want["f"]); code != 200 {
		t.Fatalf("buffered add not pinned: %d", code)
	}
}

func TestRoutes(t *testing.T) {
	ts := startServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/health", 204},
		{"GET", "/version", 200},
		{"GET", "/id", 200},
		{"GET", "/nope", 404},
		{"PUT", "/id", 405},
		{"GET", "/allocations/notacid", 400},
		{"POST", "/pins/" + "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o/?name=x", 307},
	} {
		req, _ := http.NewRequest(c.method, ts.url+c.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		if c.status == 307 && resp.Header.Get("Location") != "/pins/QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o?name=x" {
			t.Errorf("Location %q", resp.Header.Get("Location"))
		}
	}
	_, id := getJSON(t, ts.url+"/id")
	if id["id"] != testPeerID {
		t.Fatalf("/id: %v", id)
	}
	_ = time.Second
}

// TestAddRespondsWhileUploading: the 200 and its headers arrive while the
// upload is still being sent (spec §1.5, §6.3.5), and the add completes;
// chunked as the Go clients send it, and with a Content-Length as curl -F,
// browsers and the JS clients do (fasthttp would otherwise read such a
// body whole, as a parsed form, before the handler runs).
func TestAddRespondsWhileUploading(t *testing.T) {
	ts := startServer(t)
	ct, full := body(part{name: "big", body: randBytes(9<<20, 9)})
	for _, chunked := range []bool{true, false} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", ts.url+"/add", pr)
			req.Header.Set("Content-Type", ct)
			req.ContentLength = -1
			if !chunked {
				req.ContentLength = int64(len(full))
			}
			type result struct {
				resp *http.Response
				err  error
			}
			respc := make(chan result, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				respc <- result{resp, err}
			}()
			pw.Write(full[:2<<20])
			var resp *http.Response
			select {
			case r := <-respc: // headers are here; most of the file is not sent yet
				if r.err != nil {
					t.Fatal(r.err)
				}
				resp = r.resp
			case <-time.After(10 * time.Second):
				pw.CloseWithError(errors.New("test gave up"))
				t.Fatal("no response while the upload was being sent")
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !resp.Close {
				t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
			}
			pw.Write(full[2<<20:])
			pw.Close()
			raw, _ := io.ReadAll(resp.Body)
			if te := resp.Trailer.Get("X-Stream-Error"); te != "" || !strings.Contains(string(raw), `"name":"big"`) {
				t.Fatalf("add did not complete: %q %q", raw, te)
			}
		})
	}
}

// TestStalledUploadFails: a client that stops sending mid-file gets the
// stall error in the trailer, nothing is pinned, and the server serves on.
func TestStalledUploadFails(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.BodyStallTimeout = 300 * time.Millisecond })
	ct, b := body(part{name: "f", body: randBytes(1<<20, 5)})
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	half := b[:len(b)/2]
	fmt.Fprintf(conn, "POST /add HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", ct, len(half))
	conn.Write(half)
	conn.Write([]byte("\r\n"))
	// ...and nothing more, without closing: the server must give up.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if te := resp.Trailer.Get("X-Stream-Error"); !strings.Contains(te, ErrUploadStalled.Error()) {
		t.Fatalf("stalled upload: status %d trailer %q", resp.StatusCode, te)
	}
	// The error came after one stall, not two: a failed upload is drained
	// before the trailer is sent, and draining one that stalled would wait
	// for its client a second time (the documented 60 s firing at 120 s).
	if n := ts.srv.stalledUploads.Load(); n != 1 {
		t.Fatalf("the upload stalled %d times before its error was sent, want 1", n)
	}
	expectNoPins(t, ts, "stalled add")
}

func TestAllocationsStream(t *testing.T) {
	ts := startServer(t)
	resp, err := http.Get(ts.url + "/allocations?filter=all")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("empty pinset: %d", resp.StatusCode)
	}
	var roots []string
	for i := 0; i < 3; i++ {
		ct, b := body(part{name: fmt.Sprintf("f%d", i), body: randBytes(1000+i, uint64(i))})
		r := post(t, ts, "", ct, b)
		roots = append(roots, r.outputs[len(r.outputs)-1]["cid"].(string))
	}
	for _, c := range []struct {
		filter string
		status int
		n      int
	}{{"", 200, 3}, {"pin", 200, 3}, {"pin,bogus", 200, 3}, {"meta-pin", 204, 0}, {"bogus", 400, 0}} {
		resp, err := http.Get(ts.url + "/allocations?filter=" + url.QueryEscape(c.filter))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Fatalf("filter %q: %d %q", c.filter, resp.StatusCode, raw)
		}
		if c.status != 200 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		seen := map[string]bool{}
		for dec.More() {
			var p map[string]any
			if err := dec.Decode(&p); err != nil {
				t.Fatalf("filter %q: not NDJSON: %q", c.filter, raw)
			}
			seen[p["cid"].(string)] = true
		}
		for _, r := range roots {
			if !seen[r] {
				t.Fatalf("filter %q: %s missing from %q", c.filter, r, raw)
			}
		}
	}
}

// TestRejectedAddIsAnsweredNotReset: an add refused before its upload is
// read (a bad option) is answered with the 400 while the client is still
// sending several MiB, not with a connection reset.
func TestRejectedAddIsAnsweredNotReset(t *testing.T) {
	ts := startServer(t)
	ct, b := body(part{name: "f", body: randBytes(8<<20, 3)})
	for i := range 5 {
		r := post(t, ts, "chunker=bogus", ct, b)
		if r.status != 400 || !strings.Contains(string(r.raw), "chunker") {
			t.Fatalf("try %d: %d %s", i, r.status, r.raw)
		}
	}
}
