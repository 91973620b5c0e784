package blockfanout

import (
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"sync"
	"testing"
	"time"

	carv2 "github.com/ipld/go-car/v2"
	mh "github.com/multiformats/go-multihash"
)

// seqImport is a fake dag/import that numbers its requests (from 1, in
// the order the server began them, which need not be the order of their
// segments), reads each one's CAR with go-car, records the CIDs it
// carried, and then asks hold(n, first) how to answer, first being the
// index (in index) of the segment's first block: with the stats (0) or
// with that HTTP status. hold may block, e.g. until a later request has
// begun.
type seqImport struct {
	hold  func(n, first int) int
	index map[string]int // block CID (binary) -> position in the add

	mu     sync.Mutex
	begun  int               // requests begun
	change chan struct{}     // closed and replaced when begun or answered changes
	cids   []map[string]bool // per request (index n-1): the CIDs it carried
	done   map[int]bool      // segments answered with stats, by their first block
	latest int               // the highest first block of a request begun
}

func newSeqImport(blocks []testBlock, hold func(n, first int) int) *seqImport {
	si := &seqImport{hold: hold, index: map[string]int{}, change: make(chan struct{}), done: map[int]bool{}}
	for i, b := range blocks {
		si.index[b.c.KeyString()] = i
	}
	return si
}

func (si *seqImport) signalLocked() {
	close(si.change)
	si.change = make(chan struct{})
}

// await blocks until cond (called under si.mu) holds or stop is closed;
// it reports whether cond held.
func (si *seqImport) await(stop chan struct{}, cond func() bool) bool {
	for {
		si.mu.Lock()
		if cond() {
			si.mu.Unlock()
			return true
		}
		ch := si.change
		si.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

func (si *seqImport) serve(w http.ResponseWriter, r *http.Request) {
	si.mu.Lock()
	si.begun++
	n := si.begun
	si.cids = append(si.cids, map[string]bool{})
	seen := si.cids[n-1]
	si.signalLocked()
	si.mu.Unlock()
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
	var count, size uint64
	first := -1
	for {
		blk, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			kuboError(500, err.Error(), nil)(w, r)
			return
		}
		if first < 0 {
			first = si.index[blk.Cid().KeyString()]
			si.mu.Lock()
			si.latest = max(si.latest, first)
			si.signalLocked()
			si.mu.Unlock()
		}
		count++
		size += uint64(len(blk.RawData()))
		si.mu.Lock()
		seen[blk.Cid().KeyString()] = true
		si.mu.Unlock()
	}
	if code := si.hold(n, first); code != 0 {
		kuboError(code, "segment refused by the test", nil)(w, r)
		return
	}
	si.mu.Lock()
	si.done[first] = true
	si.signalLocked()
	si.mu.Unlock()
	writeJSON(w, map[string]any{"Stats": map[string]uint64{"BlockCount": count, "BlockBytesCount": size}})
}

// TestImportPipelined: once a peer has answered a dag/import, it gets the
// next segment while it still owes the answer for the previous one. The
// fake holds the answer of every request after the first until the next
// segment's request has begun: with one request at a time per peer the add would
// hang there (until the test's release), and the waitFor fails.
func TestImportPipelined(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	blocks := randomBlocks(t, 110, 40, 3<<10, mh.SHA2_256)
	var si *seqImport
	overlaps := 0
	si = newSeqImport(blocks, func(n, first int) int {
		if n == 1 {
			return 0
		}
		// The segment after this one began (the server may begin two
		// requests in either order).
		if si.await(release, func() bool { return si.latest > first }) {
			si.mu.Lock()
			overlaps++
			si.signalLocked()
			si.mu.Unlock()
		}
		return 0
	})
	fake := newFakeKubo(t, fakeID("Pipe"), 1<<30, nil)
	fake.dagImport = si.serve
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before the fake server's Close, which waits for held handlers
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "pipe", URL: fake.URL()}}, QueueBlocks: 8})
	s := f.NewSession(context.Background(), f.peerList(), 1)
	type result struct {
		res Result
		err error
	}
	closed := make(chan result, 1)
	go func() {
		for _, b := range blocks {
			if err := s.Put(context.Background(), b.c, b.data); err != nil {
				closed <- result{err: err}
				return
			}
		}
		res, err := s.Close(context.Background())
		closed <- result{res, err}
	}()
	waitFor(t, time.Minute, "three imports answered, each while the next one was open", func() bool {
		si.mu.Lock()
		defer si.mu.Unlock()
		return overlaps >= 3
	})
	free() // the last segment has no successor
	r := <-closed
	if r.err != nil || len(r.res.OK) != 1 {
		t.Fatalf("Close = %+v, %v; want the peer OK", r.res, r.err)
	}
	si.mu.Lock()
	defer si.mu.Unlock()
	total := 0
	for _, m := range si.cids {
		total += len(m)
	}
	if total != len(blocks) {
		t.Errorf("imports carried %d blocks, want each of the %d once", total, len(blocks))
	}
}

// TestImportPipelinedRetry: a segment answered before the older one is not
// acknowledged until the older one is; when the older one fails, the
// retry resends from its first block (the newer segment's blocks too),
// and every block ends up acknowledged. Segments are 4 blocks (QueueBlocks
// 8): the second one (blocks 4-7) is held until the third (8-11) was
// answered and the session took that answer, then fails once.
func TestImportPipelinedRetry(t *testing.T) {
	t.Parallel()
	blocks := randomBlocks(t, 111, 40, 3<<10, mh.SHA2_256)
	var si *seqImport
	var s *Session
	queued := make(chan int, 1)
	failed := false
	si = newSeqImport(blocks, func(_, first int) int {
		if first != 4 {
			return 0
		}
		si.mu.Lock()
		again := failed
		failed = true
		si.mu.Unlock()
		if again {
			return 0
		}
		si.await(nil, func() bool { return si.done[8] })
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for took := false; !took; <-tick.C {
			s.mu.Lock()
			st := s.streams[0]
			took = len(st.early) > 0 || st.acked >= 12
			s.mu.Unlock()
		}
		queued <- s.Stats().QueuedBlocks
		return http.StatusInternalServerError
	})
	fake := newFakeKubo(t, fakeID("Retry"), 1<<30, nil)
	fake.dagImport = si.serve
	f := startFanout(t, Config{Peers: []PeerConfig{{Name: "retry", URL: fake.URL()}}, QueueBlocks: 8})
	s = f.NewSession(context.Background(), f.peerList(), 1)
	putAll(t, s, blocks)
	res, err := s.Close(context.Background())
	if err != nil || len(res.OK) != 1 {
		t.Fatalf("Close = %+v, %v; want the peer OK after a retry", res, err)
	}
	if q := <-queued; q < 8 { // sent before the failure that Close outlived
		t.Errorf("while blocks 4-7 were unanswered, %d blocks were held; want at least 8 (blocks 8-11 answered, but not acknowledged before 4-7)", q)
	}
	si.mu.Lock()
	defer si.mu.Unlock()
	sent := make([]int, len(blocks))
	for _, m := range si.cids {
		for k := range m {
			sent[si.index[k]]++
		}
	}
	for i, n := range sent {
		switch {
		case i >= 4 && i < 12 && n < 2:
			t.Errorf("block %d sent %d times; want it resent by the retry from block 4", i, n)
		case n < 1:
			t.Errorf("block %d never sent", i)
		}
	}
}
