package restapi

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/clusterapi"
	"github.com/ingestd/ingestd/internal/kubotest"
)

// frontOf starts an ingestd in front of the cluster API at back, whose
// peers' kubo daemons are ds.
func frontOf(t *testing.T, back *testServer, ds []*kubotest.Daemon) *testServer {
	t.Helper()
	cl, err := clusterapi.New(clusterapi.Config{URL: back.url})
	if err != nil {
		t.Fatal(err)
	}
	f, err := blockfanout.New(blockfanout.Config{Dynamic: true, CheckInterval: 100 * time.Millisecond, StallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	kubo := map[string]string{}
	for _, d := range ds {
		kubo[d.PeerID] = d.URL()
	}
	return startServer(t, func(cfg *Config) {
		cfg.Fanout = f
		cfg.Cluster = &ClusterConfig{Client: cl, Kubo: kubo, SyncInterval: 100 * time.Millisecond}
	})
}

// TestFrontOfClusterAPI runs an ingestd in front of another server that
// speaks the IPFS Cluster REST API (an ingestd pinning on two real kubo
// daemons; the real IPFS Cluster is in the cluster tests): adds go to the
// kubo daemons and are pinned through the back, every other endpoint is
// the back's, streams included, and with the back down adds fail at once
// with a 503.
func TestFrontOfClusterAPI(t *testing.T) {
	back, ds, _ := kuboServer(t, 2)
	front := frontOf(t, back, ds)
	id0, id1 := ds[0].PeerID, ds[1].PeerID

	// An add allocated to one peer: its kubo holds every block and the pin
	// before the back's tracker does anything, and the pin is the back's.
	data := randBytes(900<<10, 3)
	ct, b := body(part{name: "f.bin", body: data})
	r := post(t, front, "replication-min=1&replication-max=1&name=via-front&meta-k=v&user-allocations="+id1, ct, b)
	if r.status != 200 || r.trailer != "" || len(r.outputs) == 0 {
		t.Fatalf("add through the front: %d %q %s", r.status, r.trailer, r.raw)
	}
	last := r.outputs[len(r.outputs)-1]
	root := last["cid"].(string)
	if want := kuboHash(t, map[string][]byte{"f.bin": data}, nil, "f.bin")["f.bin"]; root != want {
		t.Fatalf("root %s; kubo says %s", root, want)
	}
	if a, _ := last["allocations"].([]any); len(a) != 1 || a[0] != id1 {
		t.Fatalf("root allocations %v; want [%s]", last["allocations"], id1)
	}
	// The blocks are there when the root line comes; the pin follows
	// (the cluster pins asynchronously, on content its peer holds).
	if blocks, _ := has(t, ds[1], root); !blocks {
		t.Fatal("kubo1 lacks blocks of the add")
	}
	poll(t, "kubo1 to pin the add", func() (bool, string) { return kuboPinned(t, ds[1], root), "not pinned" })
	if blocks, _ := has(t, ds[0], root); blocks {
		t.Fatal("kubo0, not allocated, received the blocks")
	}
	code, pin := getJSON(t, back.url+"/allocations/"+root)
	meta, _ := pin["metadata"].(map[string]any)
	if code != 200 || pin["name"] != "via-front" || meta["k"] != "v" {
		t.Fatalf("the back's pin: %d %v", code, pin)
	}

	// Every other endpoint is the back's: the ctl sees the same through
	// both, streams and errors included.
	for _, args := range [][]string{{"pin", "ls", root}, {"peers", "ls"}, {"id"}, {"status", root}, {"pin", "ls", "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"}} {
		fo, fe, fc := ctl(t, front, append([]string{"--enc", "json"}, args...)...)
		bo, be, bc := ctl(t, back, append([]string{"--enc", "json"}, args...)...)
		if fc != bc || normalize(fo) != normalize(bo) || (fc != 0 && fe != be) {
			t.Fatalf("ctl %v: front exit %d %q %q; back exit %d %q %q", args, fc, fo, fe, bc, bo, be)
		}
	}
	resp, err := http.Get(front.url + "/pins")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), root) || len(resp.TransferEncoding) == 0 {
		t.Fatalf("GET /pins through the front: %d %v %s", resp.StatusCode, resp.TransferEncoding, raw)
	}

	// local=true: the blocks go to the contacted peer's IPFS daemon only
	// (the back's /id names kubo0), which takes the one allocation.
	ct, b = body(part{name: "g.bin", body: randBytes(300<<10, 4)})
	r = post(t, front, "local=true&replication-min=1&replication-max=1", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("local add through the front: %d %q %s", r.status, r.trailer, r.raw)
	}
	root = r.outputs[len(r.outputs)-1]["cid"].(string)
	if blocks, _ := has(t, ds[0], root); !blocks {
		t.Fatal("local add: kubo0 lacks blocks")
	}
	poll(t, "kubo0 to pin the local add", func() (bool, string) { return kuboPinned(t, ds[0], root), "not pinned" })
	if blocks, _ := has(t, ds[1], root); blocks {
		t.Fatal("local add: kubo1 received the blocks")
	}
	_ = id0

	// The back down: the add fails before reading the upload, nothing is
	// sent to kubo.
	if err := back.srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "h.bin"), randBytes(100<<10, 5), 0o644)
	ct, b = body(part{name: "h.bin", body: randBytes(100<<10, 5)})
	r = post(t, front, "", ct, b)
	var e struct {
		Code    int
		Message string
	}
	json.Unmarshal(r.raw, &e)
	if r.status != 503 || e.Code != 503 || !strings.Contains(e.Message, "cannot reach cluster") {
		t.Fatalf("add with the cluster down: %d %s", r.status, r.raw)
	}
}

// normalize drops the times from ctl output, which differ between calls.
func normalize(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, `"timestamp"`) || strings.Contains(l, `"created"`) || strings.Contains(l, `"expire`) || strings.Contains(l, `"received_at"`) {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
