package restapi

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// kuboExport adds data to a kubo repo and exports its DAG as a CAR with
// `ipfs dag export`, returning the CAR, the root and every CID in the DAG.
func kuboExport(t *testing.T, data []byte, flags ...string) ([]byte, string, []string) {
	t.Helper()
	repo := kubotest.NewRepo(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	root := strings.TrimSpace(string(repo.Run(t, nil, append(append([]string{"add", "-Q"}, flags...), filepath.Join(dir, "f"))...)))
	carBytes := repo.Run(t, nil, "dag", "export", root)
	refs := strings.Fields(string(repo.Run(t, nil, "refs", "-r", "--unique", root)))
	return carBytes, root, append(refs, root)
}

func TestCarRoundTripFromKubo(t *testing.T) {
	ts := startServer(t)
	carBytes, root, all := kuboExport(t, randBytes(3<<20+5, 21), "--cid-version=1", "--chunker=size-65536")
	ct, b := body(part{name: "export.car", body: carBytes})
	r := post(t, ts, "format=car&name=fromcar", ct, b)
	if r.status != 200 || r.trailer != "" || len(r.outputs) != 1 {
		t.Fatalf("status %d trailer %q outputs %v", r.status, r.trailer, r.outputs)
	}
	o := r.outputs[0]
	if o["name"] != "export.car" || o["cid"] != root || o["size"] != float64(3<<20+5) || o["bytes"] == nil {
		t.Fatalf("output %v, want root %s", o, root)
	}
	for _, s := range all {
		c, _ := cid.Decode(s)
		if ok, _ := ts.store.Has(context.Background(), c); !ok {
			t.Fatalf("block %s of the exported DAG not stored", s)
		}
	}
	if code, pin := getJSON(t, ts.url+"/allocations/"+root); code != 200 || pin["name"] != "fromcar" {
		t.Fatalf("pin %d %v", code, pin)
	}
}

func TestCarRejections(t *testing.T) {
	ts := startServer(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "ingest", "car", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	valid := read("valid-v1-unixfs.car")
	for _, c := range []struct {
		name, query string
		parts       []part
		status      int
		msg         string
	}{
		{"hash mismatch", "", []part{{name: "x.car", body: read("hash-mismatch.car")}}, 200, "does not match"},
		{"two roots", "", []part{{name: "x.car", body: read("two-roots.car")}}, 200, "roots"},
		{"zero roots", "", []part{{name: "x.car", body: read("zero-roots.car")}}, 200, "roots"},
		{"missing block", "", []part{{name: "x.car", body: read("missing-intermediate.car")}}, 200, "missing"},
		{"truncated", "", []part{{name: "x.car", body: read("truncated-section.car")}}, 200, "unexpected EOF"},
		{"version 3", "", []part{{name: "x.car", body: read("version-3.car")}}, 200, "version"},
		{"block too large", "", []part{{name: "x.car", body: read("block-too-large.car")}}, 200, "too large"},
		{"two file parts", "", []part{{name: "a.car", body: valid}, {name: "b.car", body: valid}}, 200, "exactly one file part"},
		{"wrap", "wrap-with-directory=true", []part{{name: "x.car", body: valid}}, 400, "cannot wrap a CAR file upload"},
		{"directory", "", []part{{name: "d", contentType: "application/x-directory"}}, 400, "expected CAR file is not of type file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct, b := body(c.parts...)
			r := post(t, ts, "format=car&"+c.query, ct, b)
			msg := r.trailer
			if r.status != 200 {
				var e errorBody
				json.Unmarshal(r.raw, &e)
				msg = e.Message
			}
			if r.status != c.status || !strings.Contains(msg, c.msg) {
				t.Fatalf("got %d %q (body %q), want %d %q", r.status, msg, r.raw, c.status, c.msg)
			}
		})
	}
	expectNoPins(t, ts, "rejected CARs")
	// Multi-root CARs: accepted without pinning, or with every root pinned.
	ct, b := body(part{name: "x.car", body: read("two-roots.car")})
	r := post(t, ts, "format=car&no-pin=true", ct, b)
	if r.trailer != "" || len(r.outputs) != 2 {
		t.Fatalf("no-pin two roots: %q %v", r.trailer, r.outputs)
	}
	r = post(t, ts, "format=car&pin-roots=all", ct, b)
	if r.trailer != "" || len(r.outputs) != 2 {
		t.Fatalf("pin-roots=all: %q %v", r.trailer, r.outputs)
	}
	for _, o := range r.outputs {
		if code, _ := getJSON(t, ts.url+"/allocations/"+o["cid"].(string)); code != 200 {
			t.Fatalf("root %v not pinned", o["cid"])
		}
	}
}

// TestCarCorpusOverHTTP sends every CAR of ingest/car's corpus that is not
// valid: each fails with a message (trailer or error object), the server
// keeps answering, and the pinset stays empty.
//
// Each file goes to a fresh server: blocks that one failed upload leaves in
// the store may legitimately complete another CAR's DAG.
func TestCarCorpusOverHTTP(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "ingest", "car", "testdata", "*.car"))
	n := 0
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "valid-") {
			continue
		}
		ts := startServer(t)
		data, _ := os.ReadFile(f)
		ct, b := body(part{name: name, body: data})
		r := post(t, ts, "format=car", ct, b)
		if r.status == 200 && r.trailer == "" {
			t.Errorf("%s: accepted: %s", name, r.raw)
		}
		resp, err := http.Get(ts.url + "/health")
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("%s: server stopped answering: %v", name, err)
		}
		resp.Body.Close()
		expectNoPins(t, ts, name)
		n++
	}
	if n < 20 {
		t.Fatalf("only %d broken CARs found", n)
	}
}

// headerOnlyCAR is a CARv1 with the given root and no blocks.
func headerOnlyCAR(root cid.Cid) []byte {
	cb := root.Bytes()
	h := []byte{0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58, byte(len(cb) + 1), 0x00}
	h = append(h, cb...)
	h = append(h, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01)
	return append([]byte{byte(len(h))}, h...)
}

// TestCarCompletenessLooksIntoStore: a root left in the store by a partial
// upload does not make its DAG complete when a block below it is missing.
func TestCarCompletenessLooksIntoStore(t *testing.T) {
	ts := startServer(t)
	partial, err := os.ReadFile(filepath.Join("..", "ingest", "car", "testdata", "missing-intermediate.car"))
	if err != nil {
		t.Fatal(err)
	}
	ct, b := body(part{name: "partial.car", body: partial})
	r := post(t, ts, "format=car&no-pin=true", ct, b)
	if r.trailer != "" || len(r.outputs) != 1 {
		t.Fatalf("partial upload with no-pin: %q %v", r.trailer, r.outputs)
	}
	root, _ := cid.Decode(r.outputs[0]["cid"].(string))
	if ok, _ := ts.store.Has(t.Context(), root); !ok {
		t.Fatal("root of the partial upload not stored")
	}
	ct, b = body(part{name: "pin-it.car", body: headerOnlyCAR(root)})
	r = post(t, ts, "format=car", ct, b)
	if !strings.Contains(r.trailer, "neither in the CAR nor in the store") {
		t.Fatalf("incomplete DAG accepted: %d %q %s", r.status, r.trailer, r.raw)
	}
	if code, _ := getJSON(t, ts.url+"/allocations/"+root.String()); code != 404 {
		t.Fatalf("incomplete DAG pinned: %d", code)
	}
}

// TestCarCompletenessOnPeers: with kubo peers, the blocks a CAR leaves out
// must be on the peers that will pin it, not in ingestd's own store: a
// header-only CAR of a DAG both peers hold is pinned on both; one of a DAG
// only one of them holds is refused and pinned nowhere.
func TestCarCompletenessOnPeers(t *testing.T) {
	c := startCluster(t, 2)
	ct, b := body(part{name: "both", body: randBytes(1<<20, 41)})
	r := post(t, c.testServer, "no-pin=true", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("add to both peers: %d %q %s", r.status, r.trailer, r.raw)
	}
	both := r.outputs[len(r.outputs)-1]["cid"].(string)
	root, _ := cid.Decode(both)
	ct, b = body(part{name: "pin-both.car", body: headerOnlyCAR(root)})
	r = post(t, c.testServer, "format=car", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("a DAG both peers hold was refused: %d %q %s", r.status, r.trailer, r.raw)
	}
	for i, d := range c.daemons {
		if _, pinned := has(t, d, both); !pinned {
			t.Fatalf("kubo%d did not pin %s", i, both)
		}
	}

	ct, b = body(part{name: "one", body: randBytes(1<<20, 42)})
	r = post(t, c.testServer, "no-pin=true&local=true", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("add to one peer: %d %q %s", r.status, r.trailer, r.raw)
	}
	one := r.outputs[len(r.outputs)-1]["cid"].(string)
	if blocks, _ := has(t, c.daemons[1], one); blocks {
		t.Fatal("local=true sent the blocks to the second peer too")
	}
	root, _ = cid.Decode(one)
	ct, b = body(part{name: "pin-one.car", body: headerOnlyCAR(root)})
	r = post(t, c.testServer, "format=car", ct, b)
	if !strings.Contains(r.trailer, "neither in the CAR nor") {
		t.Fatalf("a DAG one peer lacks was accepted: %d %q %s", r.status, r.trailer, r.raw)
	}
	if code, _ := getJSON(t, c.testServer.url+"/allocations/"+one); code != 404 {
		t.Fatalf("incomplete DAG pinned: %d", code)
	}
}
