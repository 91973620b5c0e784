package blockfanout

import (
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	carv2 "github.com/ipld/go-car/v2"
	mh "github.com/multiformats/go-multihash"
)

// carImport is a fake dag/import: it reads the CAR of the request's one
// part with go-car (the reference reader, which checks every block's hash)
// and answers kubo's stats, with BlockCount off by skew. It records the
// number of blocks and the roots of each request.
type carImport struct {
	skew uint64

	mu     sync.Mutex
	counts []int
	roots  []int
}

func (ci *carImport) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("pin-roots") != "false" || r.URL.Query().Get("stats") != "true" {
		kuboError(400, "want pin-roots=false and stats=true", nil)(w, r)
		return
	}
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	part, err := multipart.NewReader(r.Body, params["boundary"]).NextPart()
	if err != nil {
		kuboError(500, err.Error(), nil)(w, r)
		return
	}
	br, err := carv2.NewBlockReader(part)
	if err != nil {
		kuboError(500, err.Error(), nil)(w, r)
		return
	}
	var n, size uint64
	for {
		blk, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			kuboError(500, err.Error(), nil)(w, r)
			return
		}
		n++
		size += uint64(len(blk.RawData()))
	}
	ci.mu.Lock()
	ci.counts = append(ci.counts, int(n))
	ci.roots = append(ci.roots, len(br.Roots))
	ci.mu.Unlock()
	writeJSON(w, map[string]any{"Stats": map[string]uint64{"BlockCount": n + ci.skew, "BlockBytesCount": size}})
}

// TestImportSegments: blocks go to a peer as CAR segments of at most half
// a queue, each read back by go-car, with no roots in the header; the
// segments cover every block once.
func TestImportSegments(t *testing.T) {
	t.Parallel()
	ci := &carImport{}
	fake := newFakeKubo(t, fakeID("Car"), 1<<30, nil)
	fake.dagImport = ci.serve
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "car", URL: fake.URL()}}, QueueBlocks: 8})
	blocks := randomBlocks(t, 100, 40, 3<<10, mh.SHA2_256)
	blocks = append(blocks, randomBlocks(t, 101, 10, 9<<10, mh.BLAKE2B_MIN+31)...) // another hash: same segment stream
	s := f.NewSession(context.Background(), f.peerList(), 1)
	putAll(t, s, blocks)
	res, err := s.Close(context.Background())
	if err != nil || len(res.OK) != 1 {
		t.Fatalf("Close = %+v, %v; want the peer OK", res, err)
	}
	ci.mu.Lock()
	defer ci.mu.Unlock()
	total := 0
	for i, n := range ci.counts {
		if n < 1 || n > 4 {
			t.Errorf("segment %d has %d blocks, want 1 to 4 (half of QueueBlocks 8)", i, n)
		}
		if ci.roots[i] != 0 {
			t.Errorf("segment %d names %d roots, want none", i, ci.roots[i])
		}
		total += n
	}
	if total != len(blocks) {
		t.Errorf("segments carried %d blocks, want %d", total, len(blocks))
	}
	st := s.Stats()
	if st.Imports != int64(len(ci.counts)) || st.Requests != st.Imports {
		t.Errorf("Stats: %d requests, %d imports; the fake saw %d imports", st.Requests, st.Imports, len(ci.counts))
	}
	if w := f.peerList()[0].Wire(); w != "dag/import" {
		t.Errorf("Wire = %q, want dag/import", w)
	}
}

// TestImportFallback: a peer whose dag/import is missing (404), refused
// by a proxy (403), or answers without stats gets block/put instead, in
// the same session, without counting a failure.
func TestImportFallback(t *testing.T) {
	t.Parallel()
	f := func(name string, dagImport http.HandlerFunc) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fake := newFakeKubo(t, fakeID("Old"), 1<<30, goodAcks)
			fake.dagImport = dagImport
			fo := startFanout(t, Config{Peers: []PeerConfig{{Name: "old", URL: fake.URL()}}, MaxRetries: -1})
			s := fo.NewSession(context.Background(), fo.peerList(), 1)
			putAll(t, s, randomBlocks(t, 102, 20, 1<<10, mh.SHA2_256))
			if _, err := s.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if w := fo.peerList()[0].Wire(); w != "block/put" {
				t.Errorf("Wire = %q, want block/put", w)
			}
			if n := len(fake.putTimes()); n != 1 {
				t.Errorf("%d block/put requests, want 1", n)
			}
			fake.mu.Lock()
			imports := fake.imports
			fake.mu.Unlock()
			if imports != 1 {
				t.Errorf("%d dag/import requests, want 1 (then block/put only)", imports)
			}
		})
	}
	f("404", nil)
	f("403", kuboError(403, "forbidden by proxy", nil))
	f("no stats", func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
}

// TestImportStatsMismatch: an import whose stats do not count what was
// sent is not an acknowledgement.
func TestImportStatsMismatch(t *testing.T) {
	t.Parallel()
	fake := newFakeKubo(t, fakeID("Liar"), 1<<30, nil)
	fake.dagImport = (&carImport{skew: 1}).serve
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "liar", URL: fake.URL()}}, MaxRetries: -1})
	s := f.NewSession(context.Background(), f.peerList(), 1)
	putAll(t, s, randomBlocks(t, 103, 5, 1<<10, mh.SHA2_256))
	_, err := s.Close(context.Background())
	wantErr(t, err, ErrQuorum, "liar", "cannot match dag/import stats (6 blocks")
}

// TestImportRealKubo sends blocks of several hash functions and sizes as
// CAR segments to real kubo daemons and checks that each stored all.
func TestImportRealKubo(t *testing.T) {
	t.Parallel()
	ds := startDaemons(t, 2)
	f := startFanout(t, Config{Peers: peerConfigs(ds), QueueBlocks: 16})
	blocks := randomBlocks(t, 104, 60, 100<<10, mh.SHA2_256)
	blocks = append(blocks, randomBlocks(t, 105, 20, 1<<10, mh.SHA2_512)...)
	blocks = append(blocks, randomBlocks(t, 106, 20, 300<<10, mh.BLAKE2B_MIN+31)...)
	s := f.NewSession(context.Background(), f.peerList(), 2)
	putAll(t, s, blocks)
	res, err := s.Close(context.Background())
	if err != nil || len(res.OK) != 2 {
		t.Fatalf("Close = %+v, %v", res, err)
	}
	st := s.Stats()
	if st.Imports < 2*int64(len(blocks)/8) || st.Requests != st.Imports {
		t.Errorf("Stats %+v: want only dag/import requests, at least %d", st, 2*len(blocks)/8)
	}
	for i, d := range ds {
		if m := missingBlocks(t, d, blocks); len(m) > 0 {
			t.Errorf("kubo%d lacks %d of %d blocks", i, len(m), len(blocks))
		}
		if w := f.peerList()[i].Wire(); w != "dag/import" {
			t.Errorf("kubo%d: Wire = %q, want dag/import", i, w)
		}
	}
}

// TestStoppedPeerDropped (issue 11): a SIGSTOPped kubo, one of three with
// a quorum of two, is dropped once it holds up the add for LagTimeout: the
// session completes with the other two, without retrying or waiting out
// the stall timeout for it, and it is not among the peers that hold the
// blocks. The stall timeout is an hour, so only the lag rule can end it.
func TestStoppedPeerDropped(t *testing.T) {
	t.Parallel()
	for _, wire := range []string{"dag/import", "block/put"} {
		t.Run(wire, func(t *testing.T) {
			t.Parallel()
			ds := startDaemons(t, 3)
			victim := ds[2]
			f := startFanout(t, Config{
				Peers: peerConfigs(ds), QueueBlocks: 16, BlockPut: wire == "block/put",
				StallTimeout: time.Hour, LagTimeout: 300 * time.Millisecond,
			})
			blocks := randomBlocks(t, 107, 200, 256<<10, mh.SHA2_256)
			if err := victim.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = victim.Signal(syscall.SIGCONT) })
			s := f.NewSession(context.Background(), f.peerList(), 2)
			putAll(t, s, blocks)
			res, err := s.Close(context.Background())
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			if names := peerNames(res.OK); !slices.Equal(names, []string{"kubo0", "kubo1"}) {
				t.Errorf("OK = %v, want [kubo0 kubo1]", names)
			}
			wantErrT(t, res.Failed["kubo2"], ErrLagging, "kubo2", victim.URL())
			if errors.Is(res.Failed["kubo2"], ErrStalled) {
				t.Errorf("kubo2 failed with a stall: %v", res.Failed["kubo2"])
			}
			st := s.Stats()
			if st.Lagging != 1 {
				t.Errorf("Stats.Lagging = %d, want 1", st.Lagging)
			}
			for _, i := range []int{0, 1} {
				if m := missingBlocks(t, ds[i], blocks); len(m) > 0 {
					t.Errorf("kubo%d lacks %d of %d blocks", i, len(m), len(blocks))
				}
			}
		})
	}
}

// TestStoppedPeerNeeded: when the quorum needs the stopped peer, it is not
// dropped for lagging; the session waits for it (here until Close's
// context ends, counted by the lag rule never firing).
func TestStoppedPeerNeeded(t *testing.T) {
	t.Parallel()
	ds := startDaemons(t, 2)
	f := startFanout(t, Config{Peers: peerConfigs(ds), QueueBlocks: 8, StallTimeout: time.Hour, LagTimeout: 50 * time.Millisecond})
	if err := ds[1].Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ds[1].Signal(syscall.SIGCONT) })
	s := f.NewSession(context.Background(), f.peerList(), 2)
	putAll(t, s, randomBlocks(t, 108, 4, 256<<10, mh.SHA2_256))
	ctx, cancel := context.WithCancel(context.Background())
	closed := make(chan error, 1)
	go func() {
		_, err := s.Close(ctx)
		closed <- err
	}()
	// Let the lag rule have many chances to (wrongly) fire: the watchdog
	// ticks every 10ms here; wait until the victim owed its answer for 20
	// lag timeouts.
	waitFor(t, time.Minute, "the stopped peer to owe an answer for 20 lag timeouts", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.streams[1]
		return st.owed() && time.Since(st.since) > 20*f.cfg.lagTimeout
	})
	cancel()
	wantErr(t, <-closed, context.Canceled)
	if st := s.Stats(); st.Lagging != 0 {
		t.Errorf("Stats.Lagging = %d, want 0: the quorum needs both peers", st.Lagging)
	}
}
