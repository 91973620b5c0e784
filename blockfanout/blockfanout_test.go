package blockfanout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	mdtest "github.com/ipfs/boxo/ipld/merkledag/test"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/kuborpc"
)

var _ ingest.Sink = (*Session)(nil)

// recordingDAG keeps the blocks an importer adds, in order (children
// before parents).
type recordingDAG struct {
	ipld.DAGService
	mu     sync.Mutex
	blocks []testBlock
}

func (r *recordingDAG) Add(ctx context.Context, n ipld.Node) error {
	r.mu.Lock()
	r.blocks = append(r.blocks, testBlock{c: n.Cid(), data: n.RawData()})
	r.mu.Unlock()
	return r.DAGService.Add(ctx, n)
}

func (r *recordingDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		if err := r.Add(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// unixfsFile imports size random bytes with boxo's balanced layout (CIDv1,
// raw leaves, chunk bytes per leaf) and returns the root and every block.
func unixfsFile(t testing.TB, seed uint64, size, chunk int) (cid.Cid, []testBlock) {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), 1}).Read(data)
	rec := &recordingDAG{DAGService: mdtest.Mock()}
	params := helpers.DagBuilderParams{
		Dagserv:    rec,
		Maxlinks:   helpers.DefaultLinksPerBlock,
		RawLeaves:  true,
		CidBuilder: cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256},
	}
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(data), int64(chunk)))
	if err != nil {
		t.Fatalf("cannot start importer: %v", err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		t.Fatalf("cannot import: %v", err)
	}
	return root.Cid(), rec.blocks
}

// pinnedRecursively reports whether d has c pinned recursively.
func pinnedRecursively(t testing.TB, d *kubotest.Daemon, c cid.Cid) bool {
	t.Helper()
	out, err := d.CallErr(context.Background(), "pin/ls", url.Values{"arg": {c.String()}, "type": {"recursive"}})
	if err != nil {
		return false
	}
	var ls struct {
		Keys map[string]struct{ Type string }
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		t.Fatalf("cannot decode pin/ls %q: %v", out, err)
	}
	for k, v := range ls.Keys {
		if kc, err := cid.Decode(k); err == nil && kc.Equals(c) && v.Type == "recursive" {
			return true
		}
	}
	return false
}

func peerNames(ps []*Peer) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}

// TestKubo runs the tests that can share three kubo daemons.
func TestKubo(t *testing.T) {
	t.Parallel()
	ds := startDaemons(t, 3)
	t.Run("Replicate", func(t *testing.T) { t.Parallel(); testReplicate(t, ds) })
	t.Run("MixedHashes", func(t *testing.T) { t.Parallel(); testMixedHashes(t, ds) })
	t.Run("ReadBody", func(t *testing.T) { t.Parallel(); testReadBody(t, ds) })
	t.Run("SlowPeer", func(t *testing.T) { t.Parallel(); testSlowPeer(t, ds) })
	t.Run("ConnectAll", func(t *testing.T) { t.Parallel(); testConnectAll(t, ds) })
	t.Run("FaultyPeer", func(t *testing.T) { t.Parallel(); testFaultyPeer(t, ds[:2]) })
	t.Run("AddPeer", func(t *testing.T) { t.Parallel(); testAddPeer(t, ds) })
}

// testReplicate streams a UnixFS DAG of a few hundred blocks to three
// daemons, checks that each has every block, and pins the root on each.
func testReplicate(t *testing.T, ds []*kubotest.Daemon) {
	root, blocks := unixfsFile(t, 1, 24<<20, 64<<10)
	if len(blocks) < 300 {
		t.Fatalf("importer made %d blocks, want a few hundred", len(blocks))
	}
	// block/put: the request count below is that wire's (one per peer);
	// TestImportRealKubo covers dag/import segments.
	f := startFanout(t, Config{Peers: peerConfigs(ds), QueueBlocks: 16, BlockPut: true})
	peers, err := f.Allocate(3, 3, nil)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	s := f.NewSession(context.Background(), peers, 3)
	putAll(t, s, blocks)
	res, err := s.Close(context.Background())
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(res.OK) != 3 || len(res.Failed) != 0 {
		t.Fatalf("Close: OK %v, Failed %v; want all three OK", peerNames(res.OK), res.Failed)
	}
	st := s.Stats()
	if st.Blocks != int64(len(blocks)) || st.Requests != 3 || st.QueuedBlocks != 0 || st.MaxQueuedBlocks > 16 {
		t.Errorf("Stats = %+v; want %d blocks, 3 requests (one per peer), nothing left queued, at most 16 queued", st, len(blocks))
	}
	for i, d := range ds {
		if m := missingBlocks(t, d, blocks); len(m) > 0 {
			t.Errorf("kubo%d lacks %d of %d blocks, e.g. %s", i, len(m), len(blocks), m[0])
		}
	}

	res, err = f.Pin(context.Background(), peers, root, "replicate", true)
	if err != nil {
		t.Fatalf("Pin: %v", err)
	}
	if len(res.OK) != 3 {
		t.Fatalf("Pin: OK %v, want all three", peerNames(res.OK))
	}
	for i, d := range ds {
		if !pinnedRecursively(t, d, root) {
			t.Errorf("kubo%d: %s is not pinned recursively", i, root)
		}
	}
}

// testMixedHashes sends blocks hashed with different functions (kubo hashes
// every part of a request with the query's mhtype), an identity block (not
// sent) and a repeated block (dropped) in one session.
func testMixedHashes(t *testing.T, ds []*kubotest.Daemon) {
	var blocks []testBlock
	runs := []struct {
		code      uint64
		n, size   int
		wantRun   bool // starts a new block/put request
		sentBlock bool
	}{
		{mh.SHA2_256, 5, 100 << 10, true, true},
		{mh.BLAKE2B_MIN + 31, 3, 1 << 10, true, true}, // blake2b-256, small blocks
		{mh.SHA2_512, 2, 300 << 10, true, true},
		{mh.SHA2_256, 4, 2 << 10, true, true},
	}
	wantRequests := 0
	for i, r := range runs {
		blocks = append(blocks, randomBlocks(t, uint64(10+i), r.n, r.size, r.code)...)
		wantRequests++
	}
	identity, err := cid.V1Builder{Codec: cid.Raw, MhType: mh.IDENTITY}.Sum([]byte("tiny"))
	if err != nil {
		t.Fatal(err)
	}
	sent := slices.Clone(blocks)
	// An identity block and an immediate repeat inside the blake2b run
	// change nothing on the wire.
	blocks = slices.Insert(blocks, 6, testBlock{c: identity, data: []byte("tiny")}, blocks[5])

	// block/put, whose requests break at each change of hash function.
	f := startFanout(t, Config{Peers: peerConfigs(ds), BlockPut: true})
	s := f.NewSession(context.Background(), f.peerList(), 3)
	putAll(t, s, blocks)
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := s.Stats()
	if st.Blocks != int64(len(sent)) || st.Requests != int64(wantRequests*len(ds)) {
		t.Errorf("Stats = %+v; want %d blocks and %d requests (one per hash run and peer)", st, len(sent), wantRequests*len(ds))
	}
	for i, d := range ds {
		// block/stat asks for the CID we computed: a block that kubo had
		// hashed with another function would be missing.
		if m := missingBlocks(t, d, sent); len(m) > 0 {
			t.Errorf("kubo%d lacks %d of %d blocks: %v", i, len(m), len(sent), m)
		}
	}
}

// testReadBody sends through a transport that reads request bodies with
// Read instead of WriteTo.
func testReadBody(t *testing.T, ds []*kubotest.Daemon) {
	client := &http.Client{Transport: hideWriterTo{kuborpc.NewHTTPClient().Transport}}
	f := startFanout(t, Config{Peers: peerConfigs(ds), Client: client, QueueBlocks: 4})
	blocks := append(randomBlocks(t, 20, 30, 70<<10, mh.SHA2_256), randomBlocks(t, 21, 30, 3<<10, mh.SHA2_256)...)
	s := f.NewSession(context.Background(), f.peerList(), 3)
	putAll(t, s, blocks)
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, d := range ds {
		if m := missingBlocks(t, d, blocks); len(m) > 0 {
			t.Errorf("kubo%d lacks %d of %d blocks", i, len(m), len(blocks))
		}
	}
}

// testSlowPeer puts a throttling proxy in front of one daemon: the session
// completes at that peer's pace and never holds more than QueueBytes.
func testSlowPeer(t *testing.T, ds []*kubotest.Daemon) {
	const (
		rate       = 8 << 20 // bytes per second to the slow peer
		total      = 16 << 20
		blockSize  = 128 << 10
		queueBytes = 1 << 20
	)
	proxy := startThrottleProxy(t, ds[2].APIAddr, rate, time.Minute)
	pcs := peerConfigs(ds)
	pcs[2].URL = proxy.URL()
	f := startFanout(t, Config{Peers: pcs, QueueBytes: queueBytes})
	blocks := randomBlocks(t, 30, total/blockSize, blockSize, mh.SHA2_256)

	start := time.Now()
	s := f.NewSession(context.Background(), f.peerList(), 3)
	putAll(t, s, blocks)
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	elapsed := time.Since(start)
	st := s.Stats()
	t.Logf("16 MiB through an 8 MiB/s peer in %v; %+v", elapsed, st)
	if st.MaxQueuedBytes > queueBytes {
		t.Errorf("session held up to %d bytes, more than QueueBytes (%d)", st.MaxQueuedBytes, queueBytes)
	}
	if st.PutWaits == 0 {
		t.Errorf("no Put waited: the slow peer's queue never filled")
	}
	if min := time.Duration(float64(total) / rate * 0.8 * float64(time.Second)); elapsed < min {
		t.Errorf("session took %v, less than the slow peer allows (%v): were blocks buffered instead of waiting?", elapsed, min)
	}
	for i, d := range ds {
		if m := missingBlocks(t, d, blocks); len(m) > 0 {
			t.Errorf("kubo%d lacks %d of %d blocks", i, len(m), len(blocks))
		}
	}
}

// testConnectAll connects the daemons' swarms, then stores a DAG on one
// daemon only and pins it on the other two, which fetch it over bitswap
// (IPFS Cluster's local=true).
func testConnectAll(t *testing.T, ds []*kubotest.Daemon) {
	f := startFanout(t, Config{Peers: peerConfigs(ds)})
	if err := f.ConnectAll(context.Background()); err != nil {
		t.Fatalf("ConnectAll: %v", err)
	}
	for i, d := range ds {
		var sp struct{ Peers []struct{ Peer string } }
		if err := json.Unmarshal(d.Call(t, "swarm/peers", nil), &sp); err != nil {
			t.Fatal(err)
		}
		for j, other := range ds {
			if j != i && !slices.ContainsFunc(sp.Peers, func(p struct{ Peer string }) bool { return p.Peer == other.PeerID }) {
				t.Errorf("kubo%d is not connected to kubo%d: swarm peers %v", i, j, sp.Peers)
			}
		}
	}

	root, blocks := unixfsFile(t, 40, 1<<20, 64<<10)
	s := f.NewSession(context.Background(), f.peerList()[:1], 1)
	putAll(t, s, blocks)
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.Pin(ctx, f.peerList()[1:], root, "", true); err != nil {
		t.Fatalf("Pin on the peers without the blocks: %v", err)
	}
	for i, d := range ds[1:] {
		if !pinnedRecursively(t, d, root) {
			t.Errorf("kubo%d: %s is not pinned", i+1, root)
		}
	}
}

// testFaultyPeer adds a fake peer that fails block/put in various ways to
// two real daemons: it is retried (or not, for 4xx), dropped, and named.
func testFaultyPeer(t *testing.T, ds []*kubotest.Daemon) {
	f := func(name string, maxRetries int, handler http.HandlerFunc, wantAttempts int, wantMsg ...string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeKubo(t, fakeID("Faulty"), 1<<30, handler)
			pcs := append(peerConfigs(ds), PeerConfig{Name: "faulty", URL: fake.URL()})
			blocks := randomBlocks(t, 50, 20, 64<<10, mh.SHA2_256)
			fo := startFanout(t, Config{Peers: pcs, MaxRetries: maxRetries, StallTimeout: time.Second})

			// With minOK 2 the session succeeds without the fake.
			s := fo.NewSession(context.Background(), fo.peerList(), 2)
			putAll(t, s, blocks)
			res, err := s.Close(context.Background())
			if err != nil {
				t.Fatalf("Close with minOK 2: %v", err)
			}
			if names := peerNames(res.OK); !slices.Equal(names, []string{"kubo0", "kubo1"}) {
				t.Errorf("OK = %v, want [kubo0 kubo1]", names)
			}
			want := append([]string{"faulty", fake.URL(), fakeID("Faulty")}, wantMsg...)
			failed := res.Failed["faulty"]
			if failed == nil {
				t.Fatalf("Failed = %v, want the fake peer", res.Failed)
			}
			wantErrT(t, failed, ErrPeerUnavailable, want...)
			if got := len(fake.putTimes()); got != wantAttempts {
				t.Errorf("fake got %d block/put requests, want %d", got, wantAttempts)
			}

			// With minOK 3 the fake makes the session fail, and says why.
			s = fo.NewSession(context.Background(), fo.peerList(), 3)
			var putErr error
			for _, b := range randomBlocks(t, 51, 20, 64<<10, mh.SHA2_256) {
				if putErr = s.Put(context.Background(), b.c, b.data); putErr != nil {
					break
				}
			}
			_, err = s.Close(context.Background())
			wantErrT(t, err, ErrQuorum, want...)
			if putErr != nil {
				wantErrT(t, putErr, ErrQuorum, "faulty")
			}
		})
	}
	f("HTTP 500", 2, kuboError(500, "boom: disk on fire", nil), 3, "gave up after 3 attempts", "HTTP 500", "boom: disk on fire")
	f("HTTP 400 is not retried", 0, kuboError(400, "unrecognized multihash function", nil), 1, "HTTP 400")
	f("wrong acknowledgements", 1, wrongAcks, 2, "gave up after 2 attempts", "multihash or size differs")
	f("stall", 1, stallForever, 2, "gave up after 2 attempts", "peer stalled")
	f("Retry-After beyond the stall timeout", 3, kuboError(503, "busy", map[string]string{"Retry-After": "5"}), 1, "beyond the stall timeout")
}

// wantErrT is wantErr without stopping the test.
func wantErrT(t testing.TB, err, target error, want ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("error = %v, want one wrapping %v", err, target)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// TestRetryAfter checks that a Retry-After header sets the wait before the
// next attempt.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	fake := newFakeKubo(t, fakeID("Busy"), 1<<30, kuboError(503, "busy", map[string]string{"Retry-After": "1"}))
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "busy", URL: fake.URL()}}, MaxRetries: 1})
	s := f.NewSession(context.Background(), f.peerList(), 1)
	putAll(t, s, randomBlocks(t, 60, 2, 1<<10, mh.SHA2_256))
	_, err := s.Close(context.Background())
	wantErr(t, err, ErrQuorum, "busy", "HTTP 503")
	times := fake.putTimes()
	if len(times) != 2 {
		t.Fatalf("%d block/put requests, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Errorf("retried after %v, want about the 1s of Retry-After", gap)
	}
}

// TestKillMidSession kills one of three daemons in the middle of a large
// session.
func TestKillMidSession(t *testing.T) {
	t.Parallel()
	const n, killAt = 400, 150
	for _, minOK := range []int{2, 3} {
		t.Run(fmt.Sprintf("minOK=%d", minOK), func(t *testing.T) {
			t.Parallel()
			ds := startDaemons(t, 3)
			f := startFanout(t, Config{Peers: peerConfigs(ds), QueueBlocks: 32})
			blocks := randomBlocks(t, uint64(70+minOK), n, 64<<10, mh.SHA2_256)
			victim := ds[1]

			s := f.NewSession(context.Background(), f.peerList(), minOK)
			var putErr error
			for i, b := range blocks {
				if i == killAt {
					victim.Kill()
				}
				if putErr = s.Put(context.Background(), b.c, b.data); putErr != nil {
					break
				}
			}
			res, err := s.Close(context.Background())
			want := []string{"kubo1", victim.URL(), victim.PeerID}

			if minOK == 2 {
				if putErr != nil || err != nil {
					t.Fatalf("Put: %v, Close: %v; want success with two peers", putErr, err)
				}
				if names := peerNames(res.OK); !slices.Equal(names, []string{"kubo0", "kubo2"}) {
					t.Errorf("OK = %v, want [kubo0 kubo2]", names)
				}
				wantErrT(t, res.Failed["kubo1"], ErrPeerUnavailable, want...)
				for _, i := range []int{0, 2} {
					if m := missingBlocks(t, ds[i], blocks); len(m) > 0 {
						t.Errorf("kubo%d lacks %d of %d blocks", i, len(m), len(blocks))
					}
				}
				return
			}
			if putErr == nil {
				t.Errorf("no Put failed after the kill; want Put to stop with ErrQuorum")
			} else {
				wantErrT(t, putErr, ErrQuorum, want...)
			}
			wantErrT(t, err, ErrQuorum, want...)
			// Fast: refused connections, retried and dropped, not a stall
			// (a wall-clock bound would flake under -race).
			if errors.Is(err, ErrStalled) {
				t.Errorf("session failed with a stall: %v; want the refused connections", err)
			}
		})
	}
}

// TestAllPeersDown: nothing listens at any peer's address.
func TestAllPeersDown(t *testing.T) {
	t.Parallel()
	addrs := closedAddrs(t, 2)
	cfg := Config{
		Peers:         []PeerConfig{{Name: "down0", URL: "http://" + addrs[0]}, {Name: "down1", URL: "http://" + addrs[1]}},
		CheckInterval: 50 * time.Millisecond,
	}
	block := randomBlocks(t, 80, 1, 1<<10, mh.SHA2_256)[0]

	t.Run("known down", func(t *testing.T) {
		f := startFanout(t, cfg) // Start does not fail: peers may come up later
		for _, st := range f.Peers() {
			if st.Alive || !strings.Contains(st.LastErr, "connection refused") {
				t.Errorf("%s: Alive %v, LastErr %q; want down, connection refused", st.Peer.Name, st.Alive, st.LastErr)
			}
		}
		_, err := f.Allocate(1, 1, nil)
		wantErr(t, err, ErrNotEnoughPeers, "need at least 1, 0 of 2 live", "down0", "connection refused")

		s := f.NewSession(context.Background(), f.peerList(), 1)
		err = s.Put(context.Background(), block.c, block.data)
		wantErr(t, err, ErrQuorum, "0 of 2 peers left", "down0", "down1", addrs[0], "peer unavailable")
		_, err = s.Close(context.Background())
		wantErr(t, err, ErrQuorum)
		if n := s.Stats().Requests; n != 0 {
			t.Errorf("%d requests, want none: the peers are known down", n)
		}

		// A peer that comes up is seen at the next check.
		fake := newFakeKubo(t, fakeID("Back"), 1<<30, nil)
		fake.srv.Close()
		listenAt(t, addrs[0], fake)
		waitFor(t, 5*time.Second, "down0 to come back", func() bool { return f.Peers()[0].Alive })
		if got := f.Peers()[0].ID; got != fakeID("Back") {
			t.Errorf("ID = %q, want %q", got, fakeID("Back"))
		}
	})

	t.Run("not checked", func(t *testing.T) {
		f, err := New(cfg) // not started: no liveness information
		if err != nil {
			t.Fatal(err)
		}
		defer f.Stop()
		s := f.NewSession(context.Background(), f.peerList(), 1)
		_ = s.Put(context.Background(), block.c, block.data)
		_, err = s.Close(context.Background())
		wantErr(t, err, ErrQuorum, "down0", "down1", "connection refused", "gave up after 4 attempts")
		// 4 attempts per peer (the first, then MaxRetries), each refused:
		// no stall timeout was waited for.
		if n := s.Stats().Requests; n != 8 || errors.Is(err, ErrStalled) {
			t.Errorf("%d requests (want 8), error %v (want no stall)", n, err)
		}
	})
}

// listenAt serves fake's handler at addr (a port that was closed).
func listenAt(t *testing.T, addr string, fake *fakeKubo) {
	t.Helper()
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(fake.serve)}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen again at %s: %v", addr, err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	ok := []PeerConfig{{URL: "http://127.0.0.1:5001/"}}
	f := func(name string, cfg Config, want string) {
		t.Run(name, func(t *testing.T) {
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("New error = %v, want one containing %q", err, want)
			}
		})
	}
	f("no peers", Config{}, "no peers configured")
	f("bad scheme", Config{Peers: []PeerConfig{{URL: "ftp://127.0.0.1:5001"}}}, "want http(s)://host:port")
	f("unparsable URL", Config{Peers: []PeerConfig{{URL: "127.0.0.1:5001"}}}, "peer 0: cannot parse kubo RPC URL")
	f("URL with query", Config{Peers: []PeerConfig{{URL: "http://127.0.0.1:5001/?x=1"}}}, "want http(s)://host:port")
	f("duplicate name", Config{Peers: []PeerConfig{{Name: "a", URL: "http://h:1"}, {Name: "a", URL: "http://h:2"}}}, `peer 1: peer name "a" is already in use`)
	f("duplicate URL", Config{Peers: []PeerConfig{{Name: "a", URL: "http://h:1"}, {Name: "b", URL: "http://h:1/"}}}, `peer 1: peer URL "http://h:1" is already in use (by a)`)
	f("one block queue", Config{Peers: ok, QueueBlocks: 1}, "queue blocks (1) cannot be lower than 2")
	f("negative bytes", Config{Peers: ok, QueueBytes: -1}, "queue bytes (-1) cannot be negative")
	f("negative stall", Config{Peers: ok, StallTimeout: -time.Second}, "stall timeout (-1s) cannot be negative")
	f("retries", Config{Peers: ok, MaxRetries: -2}, "max retries (-2) cannot be lower than -1")
	f("check interval", Config{Peers: ok, CheckInterval: -1}, "check interval (-1ns) cannot be negative")
	f("lag timeout", Config{Peers: ok, LagTimeout: -1}, "lag timeout (-1ns) cannot be negative")
	f("client timeout", Config{Peers: ok, Client: &http.Client{Timeout: time.Second}}, "client timeout (1s) must be 0")

	fo, err := New(Config{Peers: ok})
	if err != nil {
		t.Fatal(err)
	}
	want := config{queueBlocks: 128, queueBytes: 8 << 20, segmentBlocks: 64, segmentBytes: 4 << 20, lagTimeout: 10 * time.Second, stallTimeout: time.Minute, maxRetries: 3, checkInterval: 5 * time.Second}
	got := fo.cfg
	got.client = nil
	if got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	if p := fo.peerList()[0]; p.Name != "http://127.0.0.1:5001" || p.URL != "http://127.0.0.1:5001" {
		t.Errorf("peer = %q %q, want the URL without its slash as both", p.Name, p.URL)
	}
	if fo, _ := New(Config{Peers: ok, MaxRetries: -1}); fo.cfg.maxRetries != 0 {
		t.Errorf("MaxRetries -1 gave %d retries, want 0", fo.cfg.maxRetries)
	}
}

// TestStop aborts a session that waits for a stalled peer.
func TestStop(t *testing.T) {
	t.Parallel()
	fake := newFakeKubo(t, fakeID("Stuck"), 1<<30, stallForever)
	f, err := New(Config{Peers: []PeerConfig{{Name: "stuck", URL: fake.URL()}}, QueueBlocks: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := f.NewSession(context.Background(), f.peerList(), 1)
	blocks := randomBlocks(t, 90, 10, 1<<10, mh.SHA2_256)
	putErr := make(chan error, 1)
	go func() {
		var err error
		for _, b := range blocks {
			if err = s.Put(context.Background(), b.c, b.data); err != nil {
				break
			}
		}
		putErr <- err
	}()
	waitFor(t, time.Minute, "Put to wait for the stalled peer", func() bool { return s.Stats().PutWaits > 0 })
	f.Stop()
	wantErr(t, <-putErr, ErrStopped)
	_, err = s.Close(context.Background())
	wantErr(t, err, ErrStopped)
	if errors.Is(err, ErrStalled) {
		t.Errorf("Close = %v; want Stop, not the stall timeout, to end it", err)
	}
	if err := f.Start(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop = %v, want ErrStopped", err)
	}
}

// TestPinStop: Stop aborts a running pin; the peer is not to blame.
func TestPinStop(t *testing.T) {
	t.Parallel()
	fake := newFakeKubo(t, fakeID("Stuck"), 1<<30, nil)
	asked := make(chan struct{}, 1)
	fake.pinAdd = func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}
	f, err := New(Config{Peers: []PeerConfig{{Name: "stuck", URL: fake.URL()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := f.Pin(context.Background(), f.peerList(), randomBlocks(t, 93, 1, 10, mh.SHA2_256)[0].c, "", true)
		done <- result{res, err}
	}()
	<-asked
	f.Stop()
	r := <-done
	wantErr(t, r.err, ErrQuorum, "stuck")
	if failed := r.res.Failed["stuck"]; !errors.Is(failed, ErrStopped) || errors.Is(failed, ErrPeerUnavailable) {
		t.Errorf("Failed = %v, want stuck stopped, not unavailable", r.res.Failed)
	}
}

// TestCloseContext: Close gives up when its context ends.
func TestCloseContext(t *testing.T) {
	t.Parallel()
	fake := newFakeKubo(t, fakeID("Stuck"), 1<<30, stallForever)
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "stuck", URL: fake.URL()}}})
	s := f.NewSession(context.Background(), f.peerList(), 1)
	putAll(t, s, randomBlocks(t, 91, 3, 1<<10, mh.SHA2_256))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := s.Close(ctx)
	wantErr(t, err, context.DeadlineExceeded, "cannot close session")
	if len(res.OK) != 0 || res.Failed["stuck"] == nil {
		t.Errorf("Result = %+v, want stuck failed", res)
	}
	if _, err := s.Close(context.Background()); err == nil {
		t.Errorf("second Close succeeded")
	}
}

// TestPinStall: a pin whose progress stops growing is canceled.
func TestPinStall(t *testing.T) {
	t.Parallel()
	fake := newFakeKubo(t, fakeID("Slow"), 1<<30, nil)
	var pinCalls atomic.Int32
	fake.pinAdd = func(w http.ResponseWriter, r *http.Request) {
		pinCalls.Add(1)
		writeJSON(w, map[string]int{"Progress": 1})
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
				writeJSON(w, map[string]int{"Progress": 1}) // alive, but not progressing
				w.(http.Flusher).Flush()
			}
		}
	}
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "slow", URL: fake.URL()}}, StallTimeout: 300 * time.Millisecond, MaxRetries: -1})
	c := randomBlocks(t, 92, 1, 10, mh.SHA2_256)[0].c
	res, err := f.Pin(context.Background(), f.peerList(), c, "", true)
	wantErr(t, err, ErrQuorum, "slow", "peer stalled", c.String())
	if !errors.Is(res.Failed["slow"], ErrStalled) || !errors.Is(res.Failed["slow"], kuborpc.ErrStalled) || !errors.Is(res.Failed["slow"], ErrPeerUnavailable) {
		t.Errorf("Failed = %v, want slow stalled and unavailable", res.Failed)
	}
	if n := pinCalls.Load(); n != 1 {
		t.Errorf("%d pin/add calls, want 1 (MaxRetries -1): the stall ends the one call", n)
	}
}

// TestNoGoroutineLeak: after Close and Stop, every goroutine of the
// Fanout, its sessions and its connections is gone: goleak names any
// goroutine started since the test began that is still running (a count
// would miss one leaked while another ended). It must not run in parallel
// with other tests.
func TestNoGoroutineLeak(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var pcs []PeerConfig
	var fakes []*fakeKubo
	for _, name := range []string{"a", "b"} {
		k := newFakeKubo(t, fakeID(name), 1<<30, goodAcks)
		fakes = append(fakes, k)
		pcs = append(pcs, PeerConfig{Name: name, URL: k.URL()})
	}
	f, err := New(Config{Peers: pcs, QueueBlocks: 4, CheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s := f.NewSession(context.Background(), f.peerList(), 2)
		putAll(t, s, randomBlocks(t, uint64(95+i), 40, 20<<10, mh.SHA2_256))
		if _, err := s.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	f.Stop()
	for _, k := range fakes {
		k.srv.Close()
	}
}
