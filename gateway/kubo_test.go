package gateway_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	car "github.com/ipld/go-car/v2"

	"github.com/ingestd/ingestd/gateway"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

const testPeerID = "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw"

// trustlessHost is the Host under which the kubo oracle serves a
// trustless-only gateway (Gateway.PublicGateways), so that one daemon is
// the oracle of both of ingestd's modes.
const trustlessHost = "trustless.test"

// noRedirect compares redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       2 * time.Minute,
	Transport:     &http.Transport{Proxy: nil, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fixture is the content added to both kubo and ingestd, by name, with
// the /add query and the `ipfs add` flags that must give the same root.
type fixture struct {
	name  string // file or directory under the fixture dir
	query string
	flags []string
}

// writeTree writes files (slash paths relative to dir, "" content for a
// directory ending in "/") under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// multipartOf builds an /add body from name under dir as ipfs-cluster-ctl
// does: a part per directory (application/x-directory) before its entries.
func multipartOf(t *testing.T, dir, name string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	err := filepath.WalkDir(filepath.Join(dir, name), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := map[string][]string{
			"Content-Disposition": {fmt.Sprintf(`form-data; name="file"; filename="%s"`, url.QueryEscape(filepath.ToSlash(rel)))},
			"Content-Type":        {"application/octet-stream"},
		}
		var data []byte
		if d.IsDir() {
			h["Content-Type"] = []string{"application/x-directory"}
		} else if data, err = os.ReadFile(p); err != nil {
			return err
		}
		pw, err := w.CreatePart(h)
		if err != nil {
			return err
		}
		_, err = pw.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

// addToIngestd posts name under dir to /add and returns the root CID.
func addToIngestd(t *testing.T, apiURL, dir, name, query string) string {
	t.Helper()
	ct, body := multipartOf(t, dir, name)
	req, err := http.NewRequest("POST", apiURL+"/add?"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" {
		t.Fatalf("add %s: status %d, trailer %q: %s", name, resp.StatusCode, resp.Trailer.Get("X-Stream-Error"), raw)
	}
	var root string
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		var out struct {
			Name string `json:"name"`
			Cid  string `json:"cid"`
		}
		if err := dec.Decode(&out); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("add %s: cannot decode output %q: %v", name, raw, err)
		}
		if out.Name == name {
			root = out.Cid
		}
	}
	if root == "" {
		t.Fatalf("add %s: no output names it: %s", name, raw)
	}
	return root
}

// startIngestd runs the REST API in-process over a fresh store, as
// restapi's tests do, and returns its URL and the store.
func startIngestd(t *testing.T) (string, *localstore.Store) {
	t.Helper()
	store, err := localstore.Open(t.TempDir(), localstore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	srv, err := restapi.New(restapi.Config{
		PeerID: testPeerID,
		Store:  store,
		Pins:   pinner.NewStore(store.Datastore(), pinner.StoreOptions{}),
		Pool:   pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	// Registered first, so it runs last: after the gateways have stopped.
	t.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			t.Errorf("restapi shutdown: %v", err)
		}
		<-done
		pool.Stop()
		store.Close()
	})
	return "http://" + ln.Addr().String(), store
}

// kuboGatewayURL polls for the gateway file kubo writes once its gateway
// serves ("http://127.0.0.1:PORT").
func kuboGatewayURL(t *testing.T, r *kubotest.Repo) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(filepath.Join(r.Path, "gateway"))
		if err == nil && strings.HasPrefix(string(b), "http://") {
			return strings.TrimSpace(string(b))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kubo wrote no gateway file: %v", err)
		case <-tick.C:
		}
	}
}

// oracle is the pair of gateways compared: kubo's (with a Host choosing
// its mode) and ingestd's.
type oracle struct {
	kuboURL, kuboHost string
	ingestdURL        string
}

// exchange is one request's answer, with what is compared.
type exchange struct {
	status int
	header http.Header
	body   []byte
}

func fetch(t *testing.T, method, base, host, target string, header http.Header) exchange {
	t.Helper()
	req, err := http.NewRequest(method, base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, base, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s%s: cannot read body: %v", method, base, target, err)
	}
	return exchange{status: resp.StatusCode, header: resp.Header, body: body}
}

// carSummary is what two CAR responses must share: version, roots, and
// the CIDs of the blocks in order. Every block is checked against its CID
// while reading (go-car's default).
type carSummary struct {
	version uint64
	roots   []string
	blocks  []string
}

func parseCAR(t *testing.T, body []byte) carSummary {
	t.Helper()
	br, err := car.NewBlockReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("cannot read CAR: %v", err)
	}
	s := carSummary{version: br.Version}
	for _, r := range br.Roots {
		s.roots = append(s.roots, r.String())
	}
	for {
		blk, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("cannot read CAR block %d: %v", len(s.blocks), err)
		}
		s.blocks = append(s.blocks, blk.Cid().String())
	}
	return s
}

// comparedHeaders are the response headers both gateways must agree on.
var comparedHeaders = []string{
	"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
	"Etag", "Cache-Control", "Location", "X-Ipfs-Path", "X-Ipfs-Roots",
	"Content-Disposition", "Vary", "X-Content-Type-Options",
	"Access-Control-Allow-Origin",
}

// compare makes the same request to both gateways and fails on any
// difference in status, compared headers, or body: CARs by their blocks,
// HTML by status and type only (pages name the host), errors by status.
// It returns ingestd's answer.
func (o oracle) compare(t *testing.T, method, target string, header http.Header) exchange {
	t.Helper()
	k := fetch(t, method, o.kuboURL, o.kuboHost, target, header)
	g := fetch(t, method, o.ingestdURL, "", target, header)
	where := fmt.Sprintf("%s %s (%v)", method, target, header)
	if k.status != g.status {
		t.Fatalf("%s: status %d, kubo %d\ningestd: %.300q\nkubo: %.300q", where, g.status, k.status, g.body, k.body)
	}
	if k.status >= 400 {
		return g
	}
	for _, h := range comparedHeaders {
		if kv, gv := k.header.Values(h), g.header.Values(h); !slices.Equal(kv, gv) {
			t.Errorf("%s: header %s %q, kubo %q", where, h, gv, kv)
		}
	}
	ct := g.header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/vnd.ipld.car") && method == "GET":
		ks, gs := parseCAR(t, k.body), parseCAR(t, g.body)
		if ks.version != gs.version || !slices.Equal(ks.roots, gs.roots) {
			t.Fatalf("%s: CARv%d roots %v, kubo CARv%d roots %v", where, gs.version, gs.roots, ks.version, ks.roots)
		}
		if !slices.Equal(ks.blocks, gs.blocks) {
			t.Fatalf("%s: blocks\n%v\nkubo\n%v", where, gs.blocks, ks.blocks)
		}
	case strings.HasPrefix(ct, "text/html"):
	case strings.HasPrefix(ct, "application/x-tar"):
		// Entries without UnixFS mtime get the time of the request: compare
		// everything else.
		if kt, gt := tarEntries(t, k.body), tarEntries(t, g.body); !slices.Equal(kt, gt) {
			t.Fatalf("%s: tar entries\n%v\nkubo\n%v", where, gt, kt)
		}
	default:
		if !bytes.Equal(k.body, g.body) {
			t.Fatalf("%s: body of %d bytes differs from kubo's %d bytes", where, len(g.body), len(k.body))
		}
	}
	return g
}

func accept(v string) http.Header { return http.Header{"Accept": {v}} }

// TestSameAsKubo adds the same content to kubo and to ingestd and makes
// the same requests to both gateways, in both of ingestd's modes: raw
// blocks, CARs of whole DAGs and of paths into directories and HAMTs,
// every dag-scope, entity-bytes ranges of multi-block files, CAR
// versions, orders and dups, missing and bad CIDs, bad paths. kubo's
// gateway (the same boxo release) is the oracle.
func TestSameAsKubo(t *testing.T) {
	repo := kubotest.NewRepo(t)
	// Offline as ingestd: a missing block is a 404 at once, not a search.
	repo.SetConfig(t, "Gateway.NoFetch", "true")
	repo.SetConfig(t, "Gateway.PublicGateways", fmt.Sprintf(
		`{%q: {"Paths": ["/ipfs"], "UseSubdomains": false, "NoDNSLink": true, "DeserializedResponses": false}}`, trustlessHost))

	dir := t.TempDir()
	big := randBytes(300_000, 1)
	medium := randBytes(600_000, 2)
	tree := map[string][]byte{
		"big.bin":                 big,
		"site/index.html":         []byte("<!doctype html><title>hi</title>\n"),
		"site/a/b/c.txt":          []byte("deep file\n"),
		"site/a/medium.bin":       medium,
		"site/with space ü.txt":   []byte("a name to escape\n"),
		"site/empty/":             nil,
		"hamt/sub/deeper/end.txt": []byte("the end of a path through two HAMTs\n"),
	}
	for i := range 40 {
		tree[fmt.Sprintf("hamt/f%02d.txt", i)] = fmt.Appendf(nil, "file %d\n", i)
	}
	for i := range 30 {
		tree[fmt.Sprintf("hamt/sub/g%02d.txt", i)] = fmt.Appendf(nil, "sub file %d\n", i)
	}
	writeTree(t, dir, tree)

	fixtures := map[string]fixture{
		// 1 KiB chunks: 293 leaves, more than one level of a balanced DAG
		// (174 links per node), so ranges cross inner nodes.
		"bigV0":   {name: "big.bin", query: "chunker=size-1024", flags: []string{"--chunker=size-1024"}},
		"bigV1":   {name: "big.bin", query: "chunker=size-1024&cid-version=1", flags: []string{"--chunker=size-1024", "--cid-version=1"}},
		"trickle": {name: "big.bin", query: "chunker=size-4096&layout=trickle&cid-version=1", flags: []string{"--chunker=size-4096", "--trickle", "--cid-version=1"}},
		"site":    {name: "site"},
		// Every directory of more than 4 entries is a HAMT of fanout 8,
		// so hamt/ (41 entries) has nested shards, and so has hamt/sub.
		"hamt": {name: "hamt", query: "max-directory-links=4&max-hamt-fanout=8", flags: []string{"--max-directory-links=4", "--max-hamt-fanout=8"}},
	}
	apiURL, store := startIngestd(t)
	roots := map[string]string{}
	for key, f := range fixtures {
		args := append([]string{"add", "-Q", "-r", "--pin=false"}, f.flags...)
		want := strings.TrimSpace(string(repo.Run(t, nil, append(args, "--", filepath.Join(dir, f.name))...)))
		got := addToIngestd(t, apiURL, dir, f.name, f.query)
		if got != want {
			t.Fatalf("%s: ingestd root %s, kubo %s", key, got, want)
		}
		roots[key] = got
	}

	kubotest.StartDaemon(t, repo)
	kuboURL := kuboGatewayURL(t, repo)
	trustless := oracle{kuboURL: kuboURL, kuboHost: trustlessHost, ingestdURL: serve(t, gateway.Config{Store: store})}
	deserialized := oracle{kuboURL: kuboURL, ingestdURL: serve(t, gateway.Config{Store: store, Deserialized: true})}

	// A CID in neither store.
	missing := rawCid(t, []byte("in neither store")).String()
	site, hamt, bigV0, bigV1, trickle := roots["site"], roots["hamt"], roots["bigV0"], roots["bigV1"], roots["trickle"]

	type request struct {
		method, target string
		header         http.Header
	}
	get := func(target string) request { return request{"GET", target, nil} }
	requests := []request{
		// Raw blocks.
		get("/ipfs/" + site + "?format=raw"),
		{"GET", "/ipfs/" + site, accept("application/vnd.ipld.raw")},
		{"HEAD", "/ipfs/" + site + "?format=raw", nil},
		get("/ipfs/" + site + "/a/b/c.txt?format=raw"),
		get("/ipfs/" + bigV0 + "?format=raw"),
		get("/ipfs/" + bigV1 + "?format=raw"),
		get("/ipfs/" + hamt + "/sub/deeper/end.txt?format=raw"),
		get("/ipfs/" + hamt + "/f07.txt?format=raw"),
		// Whole DAGs and every scope.
		get("/ipfs/" + site + "?format=car"),
		{"GET", "/ipfs/" + site, accept("application/vnd.ipld.car")},
		{"HEAD", "/ipfs/" + site + "?format=car", nil},
		get("/ipfs/" + hamt + "?format=car"),
		get("/ipfs/" + bigV0 + "?format=car"),
		get("/ipfs/" + trickle + "?format=car"),
	}
	for _, scope := range []string{"all", "entity", "block"} {
		for _, p := range []string{
			site, site + "/a", site + "/a/medium.bin", site + "/a/b/c.txt", site + "/empty",
			hamt, hamt + "/sub", hamt + "/f13.txt", hamt + "/sub/deeper/end.txt",
			bigV0, bigV1,
		} {
			requests = append(requests, get("/ipfs/"+p+"?format=car&dag-scope="+scope))
		}
	}
	// CAR versions, orders and duplicates (the Accept parameters).
	for _, a := range []string{
		"application/vnd.ipld.car; version=1",
		"application/vnd.ipld.car; version=1; order=dfs; dups=y",
		"application/vnd.ipld.car; version=1; order=dfs; dups=n",
		"application/vnd.ipld.car; version=1; order=unk",
		"application/vnd.ipld.car; version=2",
		"application/vnd.ipld.car; order=bfs",
		"application/vnd.ipld.car; dups=maybe",
	} {
		requests = append(requests,
			request{"GET", "/ipfs/" + site, accept(a)},
			request{"GET", "/ipfs/" + bigV0 + "?dag-scope=entity&entity-bytes=1000:5000", accept(a)})
	}
	// Byte ranges of multi-block files (entity-bytes).
	for _, r := range []string{
		"0:0", "0:1023", "1000:5000", "1024:2047", "150000:*", "-1000:*", "-300000:*",
		"299000:300100", "299999:*", "0:-1", "100:-100", "-5000:-4000",
		"300000:*", "400000:500000", "5:1", "x:y", "0", "",
	} {
		for _, f := range []string{bigV0, bigV1, trickle, site + "/a/medium.bin"} {
			requests = append(requests, get("/ipfs/"+f+"?format=car&dag-scope=entity&entity-bytes="+r))
		}
	}
	requests = append(requests,
		// Missing content, bad CIDs, bad paths, bad parameters.
		get("/ipfs/"+missing+"?format=raw"),
		get("/ipfs/"+missing+"?format=car"),
		get("/ipfs/"+missing),
		request{"HEAD", "/ipfs/" + missing + "?format=raw", nil},
		get("/ipfs/"+site+"/nope?format=raw"),
		get("/ipfs/"+site+"/nope?format=car"),
		get("/ipfs/"+site+"/a/b/c.txt/below-a-file?format=raw"),
		get("/ipfs/"+hamt+"/nope.txt?format=raw"),
		get("/ipfs/"+hamt+"/sub/nope?format=car"),
		get("/ipfs/"+bigV1+"/x?format=car"),
		get("/ipfs/not-a-cid?format=raw"),
		get("/ipfs/QmBadCid?format=car"),
		get("/ipfs/bafybeigdyrzt?format=raw"),
		get("/ipfs/"),
		get("/ipfs/"+site+"?format=bogus"),
		get("/ipfs/"+site+"?format=car&dag-scope=bogus"),
		request{"GET", "/ipfs/" + site, accept("application/vnd.ipld.dag-json")},
		// Deserialized responses (406 in the trustless mode, both sides).
		get("/ipfs/"+bigV0),
		get("/ipfs/"+bigV1),
		get("/ipfs/"+site+"/a/b/c.txt"),
		get("/ipfs/"+site+"/with%20space%20%C3%BC.txt"),
		get("/ipfs/"+hamt+"/sub/deeper/end.txt"),
		get("/ipfs/"+site+"/"),
		get("/ipfs/"+site),
		get("/ipfs/"+hamt+"/"),
		get("/ipfs/"+site+"/a/?format=tar"),
		request{"HEAD", "/ipfs/" + bigV0, nil},
		request{"GET", "/ipfs/" + bigV0, http.Header{"Range": {"bytes=1000-2000"}}},
		request{"GET", "/ipfs/" + bigV1, http.Header{"Range": {"bytes=-100"}}},
		request{"GET", "/ipfs/" + site + "/a/medium.bin", http.Header{"Range": {"bytes=262000-262300"}}},
	)

	for _, mode := range []struct {
		name string
		o    oracle
	}{{"trustless", trustless}, {"deserialized", deserialized}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, r := range requests {
				mode.o.compare(t, r.method, r.target, r.header)
			}
		})
	}

	t.Run("files come back byte-identical", func(t *testing.T) {
		for target, want := range map[string][]byte{
			"/ipfs/" + bigV0:                        big,
			"/ipfs/" + bigV1:                        big,
			"/ipfs/" + trickle:                      big,
			"/ipfs/" + site + "/a/medium.bin":       medium,
			"/ipfs/" + hamt + "/sub/deeper/end.txt": tree["hamt/sub/deeper/end.txt"],
		} {
			g := fetch(t, "GET", deserialized.ingestdURL, "", target, nil)
			if g.status != 200 || !bytes.Equal(g.body, want) {
				t.Fatalf("%s: status %d, %d bytes, not the %d added", target, g.status, len(g.body), len(want))
			}
		}
	})

	t.Run("dag import of its CARs", func(t *testing.T) {
		fresh := kubotest.NewRepo(t)
		for _, root := range []string{site, hamt, bigV0, bigV1, trickle} {
			g := fetch(t, "GET", trustless.ingestdURL, "", "/ipfs/"+root+"?format=car", nil)
			if g.status != 200 {
				t.Fatalf("%s: status %d", root, g.status)
			}
			out := string(fresh.Run(t, bytes.NewReader(g.body), "dag", "import", "--stats"))
			// "Pinned root\t<cid>\tsuccess": the pin needs the whole DAG.
			if !strings.Contains(out, "Pinned root\t"+root+"\tsuccess") {
				t.Fatalf("dag import of %s: %q", root, out)
			}
		}
	})
}

// tarEntries lists a tar archive's entries (name, type, mode, size and a
// hash of the content), leaving out their times.
func tarEntries(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("cannot read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("cannot read tar entry %s: %v", h.Name, err)
		}
		out = append(out, fmt.Sprintf("%s %c %o %d %x %s", h.Name, h.Typeflag, h.Mode, h.Size, sha256.Sum256(data), h.Linkname))
	}
}
