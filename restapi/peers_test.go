package restapi

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/internal/kubotest"
)

type cluster struct {
	*testServer
	daemons []*kubotest.Daemon
	fanout  *blockfanout.Fanout
}

// startCluster runs n real kubo daemons and an ingestd that targets them.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{}
	var pcs []blockfanout.PeerConfig
	for i := 0; i < n; i++ {
		d := kubotest.StartDaemon(t, kubotest.NewRepo(t))
		c.daemons = append(c.daemons, d)
		pcs = append(pcs, blockfanout.PeerConfig{Name: "kubo" + string(rune('0'+i)), URL: d.URL()})
	}
	f, err := blockfanout.New(blockfanout.Config{Peers: pcs, CheckInterval: 200 * time.Millisecond, StallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	c.fanout = f
	c.testServer = startServer(t, func(cfg *Config) { cfg.Fanout = f })
	return c
}

// has reports whether daemon d holds root's whole DAG locally and whether
// root is pinned recursively there. Every block is checked with an offline
// block/stat: kubo's refs answers 200 for a DAG it does not have and puts
// the error in the stream.
func has(t *testing.T, d *kubotest.Daemon, root string) (blocks, pinned bool) {
	t.Helper()
	local := func(c string) bool {
		_, err := d.CallErr(t.Context(), "block/stat", url.Values{"arg": {c}, "offline": {"true"}})
		return err == nil
	}
	blocks = local(root)
	if blocks {
		out, err := d.CallErr(t.Context(), "refs", url.Values{"arg": {root}, "recursive": {"true"}, "offline": {"true"}})
		dec := json.NewDecoder(bytes.NewReader(out))
		for err == nil && blocks {
			var ref struct{ Ref, Err string }
			if err = dec.Decode(&ref); err == nil {
				blocks = ref.Err == "" && local(ref.Ref)
			}
		}
	}
	out, err := d.CallErr(t.Context(), "pin/ls", url.Values{"arg": {root}, "type": {"recursive"}})
	pinned = err == nil && strings.Contains(string(out), root)
	return blocks, pinned
}

func TestAddToThreeKuboPeers(t *testing.T) {
	c := startCluster(t, 3)
	data := randBytes(5<<20+3, 31)
	ct, b := body(part{name: "f.bin", body: data})
	r := post(t, c.testServer, "replication-min=2&replication-max=3&cid-version=1&name=replicated", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("status %d trailer %q %s", r.status, r.trailer, r.raw)
	}
	root := r.outputs[len(r.outputs)-1]["cid"].(string)
	if want := kuboHash(t, map[string][]byte{"f.bin": data}, []string{"--cid-version=1"}, "f.bin")["f.bin"]; root != want {
		t.Fatalf("root %s, kubo %s", root, want)
	}
	ids := map[string]bool{}
	for _, d := range c.daemons {
		ids[d.PeerID] = true
		if blocks, pinned := has(t, d, root); !blocks || !pinned {
			t.Fatalf("daemon %s: blocks %v pinned %v", d.PeerID, blocks, pinned)
		}
	}
	if a, _ := r.outputs[len(r.outputs)-1]["allocations"].([]any); len(a) != 3 || !ids[a[0].(string)] {
		t.Fatalf("allocations %v", r.outputs[len(r.outputs)-1]["allocations"])
	}
	code, pin := getJSON(t, c.url+"/allocations/"+root)
	if a, _ := pin["allocations"].([]any); code != 200 || len(a) != 3 || pin["name"] != "replicated" {
		t.Fatalf("pin %d %v", code, pin)
	}
}

// TestAddLocal: with local=true only the first peer receives blocks; the
// others get the pin and fetch the DAG from it over bitswap.
func TestAddLocal(t *testing.T) {
	c := startCluster(t, 3)
	ct, b := body(part{name: "f", body: randBytes(2<<20, 41)})
	r := post(t, c.testServer, "local=true", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("status %d trailer %q %s", r.status, r.trailer, r.raw)
	}
	root := r.outputs[len(r.outputs)-1]["cid"].(string)
	// AddedOutput.allocations are the peers allocated to pin, not only the
	// one that receives the blocks: with replication -1, every live peer
	// (spec §4.4, §4.6).
	a, _ := r.outputs[0]["allocations"].([]any)
	got := map[any]bool{}
	for _, id := range a {
		got[id] = true
	}
	if len(a) != 3 || !got[c.daemons[0].PeerID] || !got[c.daemons[1].PeerID] || !got[c.daemons[2].PeerID] {
		t.Fatalf("local add allocations %v, want the 3 peers", a)
	}
	for i, d := range c.daemons {
		blocks, pinned := has(t, d, root)
		if !blocks || !pinned {
			t.Fatalf("daemon %d: blocks %v pinned %v", i, blocks, pinned)
		}
		var st struct{ BlocksReceived int }
		json.Unmarshal(d.Call(t, "bitswap/stat", nil), &st)
		if (i == 0) != (st.BlocksReceived == 0) {
			t.Fatalf("daemon %d received %d blocks over bitswap", i, st.BlocksReceived)
		}
	}
	// One allocation: whichever peer the allocator picks, the local peer,
	// which already holds the blocks, takes it (IPFS Cluster's rule).
	ct, b = body(part{name: "g", body: randBytes(300<<10, 42)})
	r = post(t, c.testServer, "local=true&replication-min=1&replication-max=1", ct, b)
	if r.status != 200 || r.trailer != "" {
		t.Fatalf("status %d trailer %q %s", r.status, r.trailer, r.raw)
	}
	root = r.outputs[len(r.outputs)-1]["cid"].(string)
	code, pin := getJSON(t, c.url+"/allocations/"+root)
	if a, _ := pin["allocations"].([]any); code != 200 || len(a) != 1 || a[0] != c.daemons[0].PeerID {
		t.Fatalf("pin of a one-allocation local add: %d %v", code, pin)
	}
	if _, pinned := has(t, c.daemons[0], root); !pinned {
		t.Fatal("local peer did not pin")
	}
}

// TestPeerKilledMidAdd kills a daemon while the upload streams: with
// replication-min 2 the add succeeds on the other two; with 3 it fails
// naming the dead peer, and no pin is recorded.
func TestPeerKilledMidAdd(t *testing.T) {
	for _, c := range []struct {
		min     int
		succeed bool
	}{{2, true}, {3, false}} {
		cl := startCluster(t, 3)
		pr, pw := io.Pipe()
		w := multipart.NewWriter(pw)
		type result struct {
			raw     string
			trailer string
		}
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest("POST", cl.url+"/add?cid-version=1&replication-max=3&replication-min="+string(rune('0'+c.min)), pr)
			req.Header.Set("Content-Type", w.FormDataContentType())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- result{trailer: err.Error()}
				return
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- result{string(raw), resp.Trailer.Get("X-Stream-Error")}
		}()
		fw, _ := w.CreateFormFile("file", "big")
		for i := 0; i < 24; i++ {
			if i == 8 {
				cl.daemons[2].Kill()
			}
			fw.Write(randBytes(1<<20, uint64(100+i)))
		}
		w.Close()
		pw.Close()
		r := <-done
		if c.succeed {
			if r.trailer != "" || !strings.Contains(r.raw, `"name":"big"`) {
				t.Fatalf("min %d: %q %q", c.min, r.raw, r.trailer)
			}
			var o struct {
				Cid         string
				Allocations []string
			}
			if err := json.Unmarshal([]byte(strings.TrimSpace(r.raw)), &o); err != nil {
				t.Fatalf("min %d: output %q: %v", c.min, r.raw, err)
			}
			// The root line comes once the pin is committed, and names
			// the peers that hold it, not the dead one.
			if len(o.Allocations) != 2 || slices.Contains(o.Allocations, cl.daemons[2].PeerID) {
				t.Fatalf("min %d: root allocations %v; want the 2 live peers", c.min, o.Allocations)
			}
			for _, d := range cl.daemons[:2] {
				if blocks, pinned := has(t, d, o.Cid); !blocks || !pinned {
					t.Fatalf("surviving daemon: blocks %v pinned %v", blocks, pinned)
				}
			}
			continue
		}
		if !strings.Contains(r.trailer, "kubo2") {
			t.Fatalf("min %d: trailer %q does not name the dead peer", c.min, r.trailer)
		}
		// A failed add shows no root: a client must not take it for added.
		if strings.Contains(r.raw, `"name":"big"`) {
			t.Fatalf("min %d: the failed add printed its root: %q", c.min, r.raw)
		}
		expectNoPins(t, cl.testServer, "add below replication-min")
	}
}

func TestAllPeersDown(t *testing.T) {
	c := startCluster(t, 2)
	for _, d := range c.daemons {
		d.Kill()
	}
	// Wait for the liveness checks to notice, as a user would see them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		alive := 0
		for _, st := range c.fanout.Peers() {
			if st.Alive {
				alive++
			}
		}
		if alive == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("peers still reported alive")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ct, b := body(part{name: "f", body: []byte("data")})
	r := post(t, c.testServer, "", ct, b)
	// An error object, not a 200 with the error in its trailer: the add
	// failed before its response began, without waiting on the peers.
	var e errorBody
	if err := json.Unmarshal(r.raw, &e); err != nil || r.status != 503 || e.Code != 503 || !strings.Contains(e.Message, "kubo0") {
		t.Fatalf("all down: %d %s (%v)", r.status, r.raw, err)
	}
}
