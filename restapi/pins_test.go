package restapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest/car"
)

// ctlJSON runs the ctl with --enc json and decodes every JSON value it
// prints (streams print one after another).
func ctlJSON(t *testing.T, ts *testServer, args ...string) ([]map[string]any, string, int) {
	t.Helper()
	out, stderr, code := ctl(t, ts, append([]string{"--enc", "json"}, args...)...)
	var vals []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var v map[string]any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("ctl %v printed %q: %v", args, out, err)
		}
		vals = append(vals, v)
	}
	return vals, out + stderr, code
}

// peerStatus is the status of peer in a GlobalPinInfo as the ctl prints it.
func peerStatus(g map[string]any, peer string) string {
	pm, _ := g["peer_map"].(map[string]any)
	pi, _ := pm[peer].(map[string]any)
	s, _ := pi["status"].(string)
	return s
}

// pollCtlStatus polls `ctl status cid` until peer shows want.
func pollCtlStatus(t *testing.T, ts *testServer, cid, peer, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		vals, out, code := ctlJSON(t, ts, "status", cid)
		if code == 0 && len(vals) == 1 && peerStatus(vals[0], peer) == want {
			return vals[0]
		}
		last = out
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("status of %s never showed %s on %s; last: %s", cid, want, peer, last)
	return nil
}

// TestCtlPinLifecycle drives the embedded mode with the real
// ipfs-cluster-ctl: what it adds is pinned, pins take the options the ctl
// sends, a CID whose blocks ingestd never received is a pin_error until
// they arrive and it is recovered, and pin rm removes it.
func TestCtlPinLifecycle(t *testing.T) {
	ts := startServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(file, []byte("pinned by ingestd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := kuboHash(t, map[string][]byte{"a.txt": []byte("pinned by ingestd\n")}, nil, "a.txt")["a.txt"]

	// add --wait polls GET /pins/<root> until pinned.
	out, stderr, code := ctl(t, ts, "add", "--wait", "--wait-timeout", "30s", "-Q", file)
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("ctl add --wait: exit %d, %q %q; kubo %s", code, out, stderr, want)
	}
	pollCtlStatus(t, ts, want, testPeerID, "pinned")

	// pin add with every option the ctl has, on the added content.
	_, all, code := ctlJSON(t, ts, "pin", "add", "--name", "named", "--replication", "1",
		"--metadata", "owner=alice", "--expire-in", "1h", "--no-status", want)
	if code != 0 {
		t.Fatalf("ctl pin add: exit %d: %s", code, all)
	}
	vals, all, code := ctlJSON(t, ts, "pin", "ls", want)
	if code != 0 || len(vals) != 1 {
		t.Fatalf("ctl pin ls: exit %d: %s", code, all)
	}
	pin := vals[0]
	meta, _ := pin["metadata"].(map[string]any)
	if pin["name"] != "named" || pin["replication_factor_min"] != 1.0 || pin["replication_factor_max"] != 1.0 || meta["owner"] != "alice" {
		t.Fatalf("pin ls after pin add: %v", pin)
	}
	if exp, _ := time.Parse(time.RFC3339Nano, pin["expire_at"].(string)); time.Until(exp) < 50*time.Minute {
		t.Fatalf("expire_at %v is not about an hour away", pin["expire_at"])
	}

	// A CID whose blocks ingestd never received.
	missing := "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
	if _, all, code := ctlJSON(t, ts, "pin", "add", "--no-status", missing); code != 0 {
		t.Fatalf("ctl pin add of a missing CID: exit %d: %s", code, all)
	}
	g := pollCtlStatus(t, ts, missing, testPeerID, "pin_error")
	if pm := g["peer_map"].(map[string]any)[testPeerID].(map[string]any); !strings.Contains(pm["error"].(string), missing) {
		t.Fatalf("pin_error does not name the missing block: %v", pm)
	}
	// status --filter error lists it, and only it.
	vals, all, code = ctlJSON(t, ts, "status", "--filter", "error")
	if code != 0 || len(vals) != 1 || vals[0]["cid"] != missing {
		t.Fatalf("status --filter error: exit %d: %s", code, all)
	}
	// recover re-queues; without the blocks it fails again.
	if _, all, code := ctlJSON(t, ts, "recover", missing); code != 0 {
		t.Fatalf("ctl recover: exit %d: %s", code, all)
	}
	pollCtlStatus(t, ts, missing, testPeerID, "pin_error")

	// pin rm: gone from the pinset (pin ls is a 404, exit 2) and unpinned.
	if _, all, code := ctlJSON(t, ts, "pin", "rm", "--no-status", missing); code != 0 {
		t.Fatalf("ctl pin rm: exit %d: %s", code, all)
	}
	if _, all, code := ctlJSON(t, ts, "pin", "ls", missing); code != 2 || !strings.Contains(all, "pin is not part of the pinset") {
		t.Fatalf("ctl pin ls after rm: exit %d: %s", code, all)
	}
	pollCtlStatus(t, ts, missing, testPeerID, "unpinned")
	// A second rm: 404, exit 2.
	if _, all, code := ctlJSON(t, ts, "pin", "rm", "--no-status", missing); code != 2 || !strings.Contains(all, "pin is not part of the pinset") {
		t.Fatalf("second ctl pin rm: exit %d: %s", code, all)
	}
	// Nothing left to recover: recover-all answers 204, the ctl prints
	// nothing and succeeds.
	if vals, all, code := ctlJSON(t, ts, "recover"); code != 0 || len(vals) != 0 {
		t.Fatalf("ctl recover (all): exit %d: %s", code, all)
	}
}

// TestCtlClusterCommands: the peer, health and gc commands of the ctl work
// against the embedded mode and show ingestd as the one peer.
func TestCtlClusterCommands(t *testing.T) {
	ts := startServer(t)
	vals, all, code := ctlJSON(t, ts, "peers", "ls")
	if code != 0 || len(vals) != 1 || vals[0]["id"] != testPeerID {
		t.Fatalf("ctl peers ls: exit %d: %s", code, all)
	}
	out, stderr, code := ctl(t, ts, "health", "graph")
	if code != 0 || !strings.Contains(out, "digraph") {
		t.Fatalf("ctl health graph: exit %d: %s %s", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "health", "metrics")
	if code != 0 || !strings.Contains(out, "freespace") || !strings.Contains(out, "ping") || !strings.Contains(out, "pinqueue") {
		t.Fatalf("ctl health metrics: exit %d: %s %s", code, out, stderr)
	}
	out, stderr, code = ctl(t, ts, "health", "metrics", "pinqueue")
	if code != 0 || !strings.Contains(out, testPeerID) {
		t.Fatalf("ctl health metrics pinqueue: exit %d: %s %s", code, out, stderr)
	}
	if out, stderr, code := ctl(t, ts, "--enc", "json", "health", "alerts"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("ctl health alerts: exit %d: %s %s", code, out, stderr)
	}
	vals, all, code = ctlJSON(t, ts, "ipfs", "gc")
	if code != 0 || len(vals) != 1 {
		t.Fatalf("ctl ipfs gc: exit %d: %s", code, all)
	}
	if _, ok := vals[0]["peer_map"].(map[string]any)[testPeerID]; !ok {
		t.Fatalf("ctl ipfs gc: no entry for the peer: %s", all)
	}
	// peers rm of the embedded store is refused with the error object.
	if _, all, code := ctlJSON(t, ts, "peers", "rm", testPeerID); code != 2 {
		t.Fatalf("ctl peers rm: exit %d: %s", code, all)
	}
}

// TestPinRoutesWire checks the status codes and bodies of the pin routes
// that clients key on (spec §2, §8), and that bad requests leave the
// pinset unchanged.
func TestPinRoutesWire(t *testing.T) {
	ts := startServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const unknown = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
	// kubo refuses an identity CID carrying more than 128 bytes, and md5.
	bigIdentity := cid.NewCidV1(cid.Raw, mhSum(t, bytes.Repeat([]byte("i"), 129), mh.IDENTITY)).String()
	md5 := cid.NewCidV1(cid.Raw, mhSum(t, []byte("x"), mh.MD5)).String()
	for _, c := range []struct {
		method, path string
		status       int
		msg          string // substring of the error message, if any
	}{
		{"GET", "/pins/" + unknown, 200, ""},
		{"GET", "/pins/recover", 400, "error decoding Cid"},
		{"POST", "/pins/recover", 204, ""},
		{"DELETE", "/pins/" + unknown, 404, "pin is not part of the pinset"},
		{"DELETE", "/pins/ipfs/" + unknown, 404, "pin is not part of the pinset"},
		{"POST", "/pins/" + unknown + "/recover?local=true", 404, "pin is not part of the pinset"},
		{"POST", "/pins/" + unknown + "/recover", 200, ""},
		{"POST", "/pins/notacid", 400, "error decoding Cid"},
		{"GET", "/pins?filter=bogus", 400, "invalid filter value"},
		{"GET", "/pins?cids=notacid", 400, "error decoding Cid"},
		{"GET", "/pins", 204, ""},
		{"POST", "/pins/" + unknown + "?replication-min=3&replication-max=1", 400, "larger than max"},
		{"POST", "/pins/" + unknown + "?replication-min=2&replication-max=2", 400, "above the 1 configured peers"},
		{"POST", "/pins/" + unknown + "?expire-at=yesterday", 400, "expire-at cannot be parsed"},
		{"POST", "/pins/" + unknown + "?pin-update=notacid", 400, "error decoding update option parameter"},
		{"POST", "/pins/" + unknown + "?pin-update=" + unknown, 400, "not in the pinset"},
		{"POST", "/pins/ipfs/notacid", 400, "error parsing path"},
		{"POST", "/pins/" + bigIdentity, 400, "CID refused"},
		{"POST", "/pins/ipfs/" + bigIdentity, 400, "CID refused"},
		{"POST", "/pins/" + md5, 400, "CID refused"},
		{"POST", "/pins/" + unknown + "?pin-update=" + bigIdentity, 400, "CID refused"},
		{"POST", "/pins/ipns/example.com/x", 400, "only /ipfs/ paths"},
		{"GET", "/pins/ipfs/" + unknown, 404, "not found"},
		{"DELETE", "/peers/notapeer", 400, "error decoding Peer ID"},
		{"POST", "/peers", 400, "error decoding request body"},
		{"GET", "//id", 301, ""},
		{"PUT", "/pins/" + unknown, 405, ""},
		{"GET", "/monitor/metrics/nope", 200, ""},
	} {
		req, _ := http.NewRequest(c.method, ts.url+c.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, resp.StatusCode, b, c.status)
			continue
		}
		if c.msg != "" {
			var e struct {
				Code    int
				Message string
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Code != c.status || !strings.Contains(e.Message, c.msg) {
				t.Errorf("%s %s: body %q; want an error object with %d and %q", c.method, c.path, b, c.status, c.msg)
			}
		}
		if c.status == 301 && resp.Header.Get("Location") != "/id" {
			t.Errorf("//id: Location %q", resp.Header.Get("Location"))
		}
	}
	// GET /pins/<unknown>: every peer unpinned, not a 404 (spec §8).
	_, g := getJSON(t, ts.url+"/pins/"+unknown)
	if peerStatus(g, testPeerID) != "unpinned" {
		t.Fatalf("status of an unknown CID: %v", g)
	}
	expectNoPins(t, ts, "after the bad requests")
	// /add with factors the embedded peer cannot meet: 400 before reading.
	ct, b := body(part{name: "f", body: []byte("x")})
	if r := post(t, ts, "replication-min=3&replication-max=1", ct, b); r.status != 400 {
		t.Fatalf("/add with min 3 max 1: %d %s", r.status, r.raw)
	}
	expectNoPins(t, ts, "after /add with bad factors")
}

// TestCtlGCEmbedded: ipfs gc in the embedded mode removes what no pin
// reaches and keeps pinned DAGs whole; a pin of collected content then
// fails, naming the missing block.
func TestCtlGCEmbedded(t *testing.T) {
	ts := startServer(t)
	dir := t.TempDir()
	keep, drop := filepath.Join(dir, "keep.bin"), filepath.Join(dir, "drop.bin")
	os.WriteFile(keep, randBytes(600<<10, 1), 0o644)
	os.WriteFile(drop, randBytes(600<<10, 2), 0o644)
	out, stderr, code := ctl(t, ts, "add", "-Q", keep)
	if code != 0 {
		t.Fatalf("ctl add: %d %s", code, stderr)
	}
	kept := strings.TrimSpace(out)
	out, stderr, code = ctl(t, ts, "add", "-Q", "--no-pin", drop)
	if code != 0 {
		t.Fatalf("ctl add --no-pin: %d %s", code, stderr)
	}
	dropped := strings.TrimSpace(out)

	out, stderr, code = ctl(t, ts, "--enc", "json", "ipfs", "gc")
	if code != 0 {
		t.Fatalf("ctl ipfs gc: %d %s", code, stderr)
	}
	var gc struct {
		PeerMap map[string]struct {
			Keys  []struct{ Key string }
			Error string
		} `json:"peer_map"`
	}
	if err := json.Unmarshal([]byte(out), &gc); err != nil {
		t.Fatalf("ctl ipfs gc printed %q: %v", out, err)
	}
	removed := map[string]bool{}
	for _, k := range gc.PeerMap[testPeerID].Keys {
		if c, err := cid.Decode(k.Key); err == nil {
			removed[string(c.Hash())] = true
		}
	}
	mhOf := func(s string) string { return string(cid.MustParse(s).Hash()) }
	// 600 KiB in 256 KiB chunks: three leaves and the root.
	if gc.PeerMap[testPeerID].Error != "" || len(removed) != 4 || !removed[mhOf(dropped)] || removed[mhOf(kept)] {
		t.Fatalf("ctl ipfs gc: %s; want the 4 blocks of %s removed, %s kept", out, dropped, kept)
	}
	if err := car.CheckStored(t.Context(), cid.MustParse(kept), ts.store.Get, true); err != nil {
		t.Fatalf("the pinned DAG is no longer complete: %v", err)
	}
	pollCtlStatus(t, ts, kept, testPeerID, "pinned")
	if _, all, code := ctlJSON(t, ts, "pin", "add", "--no-status", dropped); code != 0 {
		t.Fatalf("ctl pin add: %d %s", code, all)
	}
	pollCtlStatus(t, ts, dropped, testPeerID, "pin_error")
}

// TestGCWhileAdding races adds against collections: every add that
// succeeded is pinned with its whole DAG in the store, however the
// collections fell (an add's blocks are unpinned until it records its
// pin, and a collection must wait for it).
func TestGCWhileAdding(t *testing.T) {
	ts := startServer(t)
	const adds = 12
	roots := make(chan string, adds)
	var wg sync.WaitGroup
	for i := range adds {
		wg.Go(func() {
			ct, b := body(part{name: "f", body: randBytes(700<<10, uint64(100+i))})
			r := post(t, ts, "", ct, b)
			if r.status != 200 || r.trailer != "" || len(r.outputs) == 0 {
				t.Errorf("add %d: %d %q %s", i, r.status, r.trailer, r.raw)
				return
			}
			roots <- r.outputs[len(r.outputs)-1]["cid"].(string)
		})
	}
	stop := make(chan struct{})
	gcs := 0
	var gcWG sync.WaitGroup
	gcWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Post(ts.url+"/ipfs/gc", "", nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			gcs++
		}
	})
	wg.Wait()
	close(stop)
	gcWG.Wait()
	close(roots)
	n := 0
	for root := range roots {
		n++
		if err := car.CheckStored(t.Context(), cid.MustParse(root), ts.store.Get, true); err != nil {
			t.Errorf("pinned %s lost blocks to a collection: %v", root, err)
		}
	}
	if n != adds || gcs == 0 {
		t.Fatalf("%d adds succeeded, %d collections ran", n, gcs)
	}
}

// TestGCInterval: with GCInterval, the embedded store collects by itself:
// a no-pin add's blocks go, a pinned add's stay.
func TestGCInterval(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.GCInterval = 50 * time.Millisecond })
	ct, b := body(part{name: "keep", body: randBytes(300<<10, 61)})
	keep := post(t, ts, "", ct, b)
	ct, b = body(part{name: "drop", body: randBytes(300<<10, 62)})
	drop := post(t, ts, "no-pin=true", ct, b)
	if keep.status != 200 || drop.status != 200 || len(keep.outputs) == 0 || len(drop.outputs) == 0 {
		t.Fatalf("adds: %d %d", keep.status, drop.status)
	}
	kept := cid.MustParse(keep.outputs[len(keep.outputs)-1]["cid"].(string))
	dropped := cid.MustParse(drop.outputs[len(drop.outputs)-1]["cid"].(string))
	poll(t, "the interval collection to remove the unpinned add", func() (bool, string) {
		ok, err := ts.store.Has(t.Context(), dropped)
		return err == nil && !ok, fmt.Sprint(ok, err)
	})
	if err := car.CheckStored(t.Context(), kept, ts.store.Get, true); err != nil {
		t.Fatalf("the pinned add lost blocks: %v", err)
	}
}

func mhSum(t *testing.T, data []byte, code uint64) mh.Multihash {
	t.Helper()
	h, err := mh.Sum(data, code, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
