package restapi

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/pinner"
)

// kuboServer runs n real kubo daemons and an ingestd that pins on them,
// with short tracker intervals so that tests see expiry, reconciliation
// and alerts within seconds.
func kuboServer(t *testing.T, n int) (*testServer, []*kubotest.Daemon, *blockfanout.Fanout) {
	t.Helper()
	var ds []*kubotest.Daemon
	var pcs []blockfanout.PeerConfig
	for i := range n {
		d := kubotest.StartDaemon(t, kubotest.NewRepo(t))
		ds = append(ds, d)
		pcs = append(pcs, blockfanout.PeerConfig{Name: fmt.Sprintf("kubo%d", i), URL: d.URL()})
	}
	f, err := blockfanout.New(blockfanout.Config{Peers: pcs, CheckInterval: 100 * time.Millisecond, StallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	// IPFS Cluster expects its peers' daemons to be connected, so that a
	// pin of content one of them holds is fetched over bitswap.
	if err := f.ConnectAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	var p *pinner.Pinner
	ts := startServer(t, func(cfg *Config) {
		cfg.Fanout = f
		p, err = pinner.New(pinner.Config{
			Store:             cfg.Pins,
			Self:              pinner.PeerState{ID: cfg.PeerID},
			Targets:           FanoutTargets(f),
			MaxAttempts:       2,
			PinTimeout:        20 * time.Second,
			CheckTimeout:      5 * time.Second,
			ReconcileInterval: 300 * time.Millisecond,
			ExpiryInterval:    100 * time.Millisecond,
			MetricTTL:         500 * time.Millisecond,
			Logger:            log.New(io.Discard, "", 0),
		})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Pinner = p
	})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop) // before the server's cleanup closes the store
	return ts, ds, f
}

// kuboAddUnpinned adds data to d without pinning it and returns its CID.
func kuboAddUnpinned(t *testing.T, d *kubotest.Daemon, data string) string {
	t.Helper()
	out := d.Repo.Run(t, strings.NewReader(data), "add", "-Q", "--pin=false")
	return strings.TrimSpace(string(out))
}

func kuboPinned(t *testing.T, d *kubotest.Daemon, c string) bool {
	t.Helper()
	out, err := d.CallErr(t.Context(), "pin/ls", url.Values{"arg": {c}, "type": {"all"}})
	return err == nil && strings.Contains(string(out), c)
}

// poll checks cond every 20 ms for up to 30 s (a hang guard, not a
// performance bound).
func poll(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last: %s", what, last)
}

// TestCtlKuboPeers drives ingestd in front of real kubo daemons with the
// real ipfs-cluster-ctl, and checks every claim against kubo's own pin/ls:
// pins land on the allocated peer only; a pin removed behind ingestd's
// back is reported and recovered; pin rm and expiry unpin on kubo; gc runs
// kubo's repo/gc; a killed peer is a cluster_error with an alert, and its
// pins are pinned again after it restarts.
func TestCtlKuboPeers(t *testing.T) {
	ts, ds, _ := kuboServer(t, 2)
	id0, id1 := ds[0].PeerID, ds[1].PeerID

	vals, all, code := ctlJSON(t, ts, "peers", "ls")
	if code != 0 || len(vals) != 2 {
		t.Fatalf("ctl peers ls: exit %d: %s", code, all)
	}
	for _, v := range vals {
		if ipfs, _ := v["ipfs"].(map[string]any); v["id"] != ipfs["id"] || (v["id"] != id0 && v["id"] != id1) {
			t.Fatalf("ctl peers ls: %v is not one of the kubo peers", v)
		}
	}

	// A pin allocated to one peer lands there and nowhere else.
	x := kuboAddUnpinned(t, ds[0], "pinned on kubo0 only")
	if _, all, code := ctlJSON(t, ts, "pin", "add", "--replication", "1", "--allocations", id0, "--no-status", x); code != 0 {
		t.Fatalf("ctl pin add: exit %d: %s", code, all)
	}
	g := pollCtlStatus(t, ts, x, id0, "pinned")
	if peerStatus(g, id1) != "remote" {
		t.Fatalf("the peer not allocated: %v", g)
	}
	if !kuboPinned(t, ds[0], x) || kuboPinned(t, ds[1], x) {
		t.Fatalf("kubo pins: kubo0 %v kubo1 %v; want only kubo0", kuboPinned(t, ds[0], x), kuboPinned(t, ds[1], x))
	}

	// Removed behind ingestd's back: status says so at once; recover pins
	// it again on kubo.
	ds[0].Call(t, "pin/rm", url.Values{"arg": {x}})
	vals, all, code = ctlJSON(t, ts, "status", x)
	if code != 0 || len(vals) != 1 || peerStatus(vals[0], id0) != "unexpectedly_unpinned" {
		t.Fatalf("ctl status after pin/rm behind ingestd's back: exit %d: %s", code, all)
	}
	if _, all, code := ctlJSON(t, ts, "recover", x); code != 0 {
		t.Fatalf("ctl recover: exit %d: %s", code, all)
	}
	pollCtlStatus(t, ts, x, id0, "pinned")
	if !kuboPinned(t, ds[0], x) {
		t.Fatal("recover did not pin it on kubo")
	}

	// pin rm reaches kubo.
	if _, all, code := ctlJSON(t, ts, "pin", "rm", "--no-status", x); code != 0 {
		t.Fatalf("ctl pin rm: exit %d: %s", code, all)
	}
	poll(t, "pin rm to reach kubo0", func() (bool, string) { return !kuboPinned(t, ds[0], x), "still pinned" })

	// An expired pin is unpinned on its peer and leaves the pinset.
	y := kuboAddUnpinned(t, ds[1], "expires on kubo1")
	if _, all, code := ctlJSON(t, ts, "pin", "add", "--replication", "1", "--allocations", id1, "--expire-in", "3s", "--no-status", y); code != 0 {
		t.Fatalf("ctl pin add --expire-in: exit %d: %s", code, all)
	}
	pollCtlStatus(t, ts, y, id1, "pinned")
	poll(t, "the expired pin to leave kubo1", func() (bool, string) { return !kuboPinned(t, ds[1], y), "still pinned" })
	if code, _ := getJSON(t, ts.url+"/allocations/"+y); code != 404 {
		t.Fatalf("the expired pin is still in the pinset: %d", code)
	}

	// ipfs gc runs kubo's repo/gc on each peer and lists what it removed:
	// the unpinned block, not the pinned one.
	garbage := kuboAddUnpinned(t, ds[0], "garbage on kubo0")
	kept := kuboAddUnpinned(t, ds[0], "kept on kubo0")
	if _, all, code := ctlJSON(t, ts, "pin", "add", "--no-status", kept); code != 0 {
		t.Fatalf("ctl pin add: exit %d: %s", code, all)
	}
	pollCtlStatus(t, ts, kept, id0, "pinned")
	out, stderr, code := ctl(t, ts, "--enc", "json", "ipfs", "gc")
	if code != 0 {
		t.Fatalf("ctl ipfs gc: exit %d: %s", code, stderr)
	}
	var gc struct {
		PeerMap map[string]struct {
			Keys []struct{ Key string }
		} `json:"peer_map"`
	}
	if err := json.Unmarshal([]byte(out), &gc); err != nil {
		t.Fatalf("ctl ipfs gc printed %q: %v", out, err)
	}
	// kubo reports blocks as raw CIDv1 (its blockstore is keyed by
	// multihash): compare multihashes.
	removed := map[string]bool{}
	for _, k := range gc.PeerMap[id0].Keys {
		if c, err := cid.Decode(k.Key); err == nil {
			removed[string(c.Hash())] = true
		}
	}
	mhOf := func(s string) string { return string(cid.MustParse(s).Hash()) }
	if len(gc.PeerMap) != 2 || !removed[mhOf(garbage)] || removed[mhOf(kept)] {
		t.Fatalf("ctl ipfs gc: %s; want kubo0 to remove %s and keep %s", out, garbage, kept)
	}

	// A killed peer: its pins become cluster_error and an alert is
	// raised; after a restart on the same address they are pinned again.
	ds[1].Kill()
	pollCtlStatus(t, ts, kept, id1, "cluster_error")
	poll(t, "a ping alert for kubo1", func() (bool, string) {
		out, _, _ := ctl(t, ts, "--enc", "json", "health", "alerts")
		return strings.Contains(out, id1) && strings.Contains(out, `"ping"`), out
	})
	ds[1].Repo.SetConfig(t, "Addresses.API", fmt.Sprintf(`"/ip4/127.0.0.1/tcp/%s"`, ds[1].APIAddr[strings.LastIndex(ds[1].APIAddr, ":")+1:]))
	ds[1] = kubotest.StartDaemon(t, ds[1].Repo)
	pollCtlStatus(t, ts, kept, id1, "pinned")
	poll(t, "kubo1 to hold the pin again", func() (bool, string) { return kuboPinned(t, ds[1], kept), "not pinned" })
}

// TestKuboPeersPathsUpdate: peers can be removed and added back at run
// time; a pin path with a sub-path resolves as kubo resolves it; pin
// update gives the new pin the old one's options and pins it on kubo with
// the old one kept; an add with mode=direct pins only the root on kubo.
func TestKuboPeersPathsUpdate(t *testing.T) {
	ts, ds, _ := kuboServer(t, 2)
	id0, id1 := ds[0].PeerID, ds[1].PeerID
	peers := func() int {
		vals, all, code := ctlJSON(t, ts, "peers", "ls")
		if code != 0 {
			t.Fatalf("ctl peers ls: exit %d: %s", code, all)
		}
		return len(vals)
	}
	postPeer := func(body string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(ts.url+"/peers", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if _, all, code := ctlJSON(t, ts, "peers", "rm", id1); code != 0 || peers() != 1 {
		t.Fatalf("ctl peers rm: exit %d: %s", code, all)
	}
	if code, m := postPeer(`{"peer_id":"` + id1 + `"}`); code != 200 || m["id"] != id1 || peers() != 2 {
		t.Fatalf("POST /peers to restore: %d %v", code, m)
	}
	ctlJSON(t, ts, "peers", "rm", id1)
	if code, m := postPeer(`{"peer_id":"` + id1 + `","url":"` + ds[1].URL() + `","name":"back"}`); code != 200 || m["id"] != id1 || m["peername"] != "back" || peers() != 2 {
		t.Fatalf("POST /peers with a URL: %d %v", code, m)
	}
	if code, m := postPeer(`{"peer_id":"` + id0 + `","url":"` + ds[1].URL() + `"}`); code != 400 || peers() != 2 {
		t.Fatalf("POST /peers with the URL of another peer: %d %v", code, m)
	}

	// A path into a directory: the pinned CID is the one kubo resolves.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "d", "sub", "f.txt"), []byte("deep file"), 0o644)
	root := strings.TrimSpace(string(ds[0].Repo.Run(t, nil, "add", "-r", "-Q", "--pin=false", filepath.Join(dir, "d"))))
	var res struct{ Path string }
	json.Unmarshal(ds[0].Call(t, "resolve", url.Values{"arg": {"/ipfs/" + root + "/sub/f.txt"}}), &res)
	want := strings.TrimPrefix(res.Path, "/ipfs/")
	vals, all, code := ctlJSON(t, ts, "pin", "add", "--replication", "1", "--allocations", id0, "--no-status", "/ipfs/"+root+"/sub/f.txt")
	if code != 0 || len(vals) != 1 || vals[0]["cid"] != want {
		t.Fatalf("ctl pin add of a path: exit %d: %s; kubo resolves it to %s", code, all, want)
	}
	pollCtlStatus(t, ts, want, id0, "pinned")

	// pin update: options and allocations carried over, both pinned on kubo.
	from := kuboAddUnpinned(t, ds[0], "version 1")
	to := kuboAddUnpinned(t, ds[0], "version 2")
	if _, all, code := ctlJSON(t, ts, "pin", "add", "--name", "doc", "--replication", "1", "--allocations", id0, "--metadata", "v=1", "--no-status", from); code != 0 {
		t.Fatalf("ctl pin add: exit %d: %s", code, all)
	}
	pollCtlStatus(t, ts, from, id0, "pinned")
	if _, all, code := ctlJSON(t, ts, "pin", "update", "--no-status", from, to); code != 0 {
		t.Fatalf("ctl pin update: exit %d: %s", code, all)
	}
	vals, all, code = ctlJSON(t, ts, "pin", "ls", to)
	if code != 0 || len(vals) != 1 {
		t.Fatalf("ctl pin ls: exit %d: %s", code, all)
	}
	allocs, _ := vals[0]["allocations"].([]any)
	meta, _ := vals[0]["metadata"].(map[string]any)
	if vals[0]["name"] != "doc" || len(allocs) != 1 || allocs[0] != id0 || meta["v"] != "1" || vals[0]["pin_update"] != from {
		t.Fatalf("the updated pin did not take the old one's options: %v", vals[0])
	}
	pollCtlStatus(t, ts, to, id0, "pinned")
	if !kuboPinned(t, ds[0], to) || !kuboPinned(t, ds[0], from) {
		t.Fatalf("kubo0 pins: new %v, old %v; want both", kuboPinned(t, ds[0], to), kuboPinned(t, ds[0], from))
	}

	// mode=direct on /add pins only the root on the peers.
	ct, b := body(part{name: "big.bin", body: randBytes(600<<10, 5)})
	r := post(t, ts, "mode=direct&replication-min=1&replication-max=1&user-allocations="+id1, ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("direct add: %d %q %s", r.status, r.trailer, r.raw)
	}
	rootCid := r.outputs[len(r.outputs)-1]["cid"].(string)
	out, err := ds[1].CallErr(t.Context(), "pin/ls", url.Values{"arg": {rootCid}, "type": {"direct"}})
	if err != nil || !strings.Contains(string(out), rootCid) {
		t.Fatalf("kubo1 has no direct pin of %s: %s %v", rootCid, out, err)
	}
	if _, err := ds[1].CallErr(t.Context(), "pin/ls", url.Values{"arg": {rootCid}, "type": {"recursive"}}); err == nil {
		t.Fatalf("kubo1 pinned %s recursively", rootCid)
	}
	_, pin := getJSON(t, ts.url+"/allocations/"+rootCid)
	if pin["mode"] != "direct" || pin["max_depth"] != 0.0 {
		t.Fatalf("the pin of a direct add: %v", pin)
	}
}
