package localstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/ingest/car"
)

// smallSegments makes segments 1 MiB for the test: ten 100 KiB blocks each.
func smallSegments(t *testing.T) {
	t.Helper()
	old := maxSegmentSize
	maxSegmentSize = 1 << 20
	t.Cleanup(func() { maxSegmentSize = old })
}

// segmentFiles returns the ids of the segment files in dir.
func segmentFiles(t *testing.T, dir string) []uint32 {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, e := range entries {
		var id uint32
		if n, _ := fmt.Sscanf(e.Name(), "%08d.log", &id); n == 1 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

type stored struct {
	c    cid.Cid
	data []byte
}

// putSegments puts n blocks of 100 KiB (ten to a 1 MiB segment, which is
// sealed when the eleventh starts the next) and syncs.
func putSegments(t *testing.T, s *Store, seed uint64, n int) []stored {
	t.Helper()
	var out []stored
	for i := range n {
		c, data := testBlock(t, seed+uint64(i), 100<<10)
		if err := s.Put(context.Background(), c, data); err != nil {
			t.Fatal(err)
		}
		out = append(out, stored{c, data})
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return out
}

func rawRoots(bs []stored) func(yield func(Root) error) error {
	return func(yield func(Root) error) error {
		for _, b := range bs {
			if err := yield(Root{Cid: b.c, Recursive: true}); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestCompact: after Collect, the segments at most half live are compacted
// (their live blocks copied, their files deleted), one that is more than
// half live is not; every live block reads back, before and after
// reopening; a second Collect has nothing left to do. It runs on the disk
// (O_DIRECT writes and reads) and on pebble's in-memory FS (buffered).
func TestCompact(t *testing.T) {
	smallSegments(t)
	f := func(name string, open func() *Store) {
		t.Helper()
		s := open()
		blocks := putSegments(t, s, 0, 41) // segments 1 to 4, ten blocks each, and one in 5
		if got := segmentsOf(t, s); !slices.Equal(got, []uint32{1, 2, 3, 4, 5}) {
			t.Fatalf("%s: segment files %v; the test expects 1–4 full and 5 current", name, got)
		}
		_, live := compactBlocks(t)
		removed, st, err := s.collect(t.Context(), rawRoots(live), car.Links)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(removed) != len(blocks)-len(live) {
			t.Fatalf("%s: removed %d blocks; want %d", name, len(removed), len(blocks)-len(live))
		}
		// Segment 1 is 20% live, 2 is 50% (at most half: compacted), 3 is
		// 60% (kept), 4 holds nothing live (deleted without a copy).
		want := CompactStats{Segments: 3, Copied: 7 * 100 << 10, Freed: 3 * 10 * 100 << 10}
		if st != want {
			t.Fatalf("%s: compaction: %+v; want %+v", name, st, want)
		}
		if got := segmentsOf(t, s); !slices.Equal(got, []uint32{3, 5}) {
			t.Fatalf("%s: segment files after compaction %v; want [3 5]", name, got)
		}
		check := func() {
			t.Helper()
			for i, b := range blocks {
				if contains(compactKeep, i) {
					checkBlock(t, s, b.c, b.data)
				} else if present(t, s, b.c) {
					t.Fatalf("%s: removed block %d is still there", name, i)
				}
			}
		}
		check()
		again, st, err := s.collect(t.Context(), rawRoots(live), car.Links)
		if err != nil || len(again) != 0 || st != (CompactStats{}) {
			t.Fatalf("%s: second Collect: removed %d, %+v, %v; want nothing", name, len(again), st, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open()
		check()
	}
	dir := directDir(t)
	f("O_DIRECT", func() *Store {
		s := openTest(t, dir)
		if s.log.direct == nil {
			t.Fatal("no O_DIRECT")
		}
		return s
	})
	mem := vfs.NewMem()
	f("buffered", func() *Store {
		popts := pebbleOptions()
		popts.FS = mem
		s, err := open("/db", Options{}, popts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// segmentsOf returns the ids of the segment files of s.
func segmentsOf(t *testing.T, s *Store) []uint32 {
	t.Helper()
	names, err := s.log.fs.List(s.log.dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, name := range names {
		var id uint32
		if n, _ := fmt.Sscanf(name, "%08d.log", &id); n == 1 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestCompactDisabled: with a negative threshold Collect only drops index
// entries.
func TestCompactDisabled(t *testing.T) {
	smallSegments(t)
	dir := t.TempDir()
	s, err := Open(dir, Options{CompactThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putSegments(t, s, 0, 21)
	if _, st, err := s.collect(t.Context(), rawRoots(nil), car.Links); err != nil || st != (CompactStats{}) {
		t.Fatalf("Collect: %+v, %v; want no compaction", st, err)
	}
	if got := segmentFiles(t, dir); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("segment files %v; want [1 2 3]", got)
	}
}

// TestCompactCorrupt: a segment holding a live block that fails its check
// is not compacted (the block stays where Verify reports it); the other
// segments are, and the error names the block.
func TestCompactCorrupt(t *testing.T) {
	smallSegments(t)
	dir := t.TempDir()
	s := openTest(t, dir)
	blocks := putSegments(t, s, 0, 21)
	live := []stored{blocks[2], blocks[3], blocks[12]}
	bad := where(t, s, blocks[3].c)
	flipByte(t, dir, bad.seg, bad.off+10)
	_, st, err := s.collect(t.Context(), rawRoots(live), car.Links)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), blocks[3].c.String()) {
		t.Fatalf("Collect over a corrupt live block: %v; want ErrCorrupt naming %s", err, blocks[3].c)
	}
	if st.Segments != 1 {
		t.Fatalf("compacted %d segments; want 1 (segment 2; segment 1 holds the corrupt block)", st.Segments)
	}
	if got := segmentFiles(t, dir); !slices.Equal(got, []uint32{1, 3}) {
		t.Fatalf("segment files %v; want [1 3]", got)
	}
	checkBlock(t, s, blocks[2].c, blocks[2].data)
	checkBlock(t, s, blocks[12].c, blocks[12].data)
	checkCorrupt(t, s, blocks[3].c, bad)
}

// TestCompactWhileAdding runs adds (Puts under Hold, then pinned or not),
// unpins, Collects (which compact), Compacts and Gets at once, under the
// race detector in CI: no block of a pin is ever missing or different, and
// at the end every pinned block reads back, every other is gone, and no
// segment at most half live is left.
func TestCompactWhileAdding(t *testing.T) {
	old := maxSegmentSize
	maxSegmentSize = 256 << 10 // many segments, many compactions
	t.Cleanup(func() { maxSegmentSize = old })
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()

	const adders, adds, perAdd = 3, 12, 6
	var mu sync.Mutex
	pinned := map[cid.Cid][]byte{}    // roots of the next Collect
	permanent := map[cid.Cid][]byte{} // pinned and never unpinned
	var permList []cid.Cid
	var garbage []cid.Cid // never pinned, or unpinned
	roots := func(yield func(Root) error) error {
		mu.Lock()
		rs := make([]Root, 0, len(pinned))
		for c := range pinned {
			rs = append(rs, Root{Cid: c, Recursive: true})
		}
		mu.Unlock()
		for _, r := range rs {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}

	var adding sync.WaitGroup
	for a := range adders {
		adding.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(a), 1))
			for n := range adds {
				release := s.Hold()
				var blocks []stored
				for i := range perAdd {
					seed := uint64(a*100_000 + n*100 + i)
					c, data := testBlock(t, seed, 1+rnd.IntN(60<<10))
					if err := s.Put(ctx, c, data); err != nil {
						t.Error(err)
						release()
						return
					}
					blocks = append(blocks, stored{c, data})
				}
				if err := s.Sync(ctx); err != nil {
					t.Error(err)
				}
				mu.Lock()
				switch n % 3 {
				case 0: // pinned for good
					for _, b := range blocks {
						pinned[b.c], permanent[b.c] = b.data, b.data
						permList = append(permList, b.c)
					}
				case 1: // pinned, unpinned by a later add
					for _, b := range blocks {
						pinned[b.c] = b.data
						garbage = append(garbage, b.c)
					}
				default: // never pinned (a failed add)
					for _, b := range blocks {
						garbage = append(garbage, b.c)
					}
				}
				if n%3 == 0 && n > 0 {
					for c := range pinned {
						if _, ok := permanent[c]; !ok {
							delete(pinned, c)
						}
					}
				}
				mu.Unlock()
				release()
			}
		})
	}
	done := make(chan struct{})
	var others sync.WaitGroup
	var compacted, collects int
	others.Go(func() { // collector
		for {
			select {
			case <-done:
				return
			default:
			}
			_, st, err := s.collect(ctx, roots, car.Links)
			if err != nil {
				t.Error(err)
				return
			}
			compacted += st.Segments
			collects++
		}
	})
	var compactedAlone int
	others.Go(func() { // compactor
		for {
			select {
			case <-done:
				return
			default:
			}
			st, err := s.Compact(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			compactedAlone += st.Segments
		}
	})
	others.Go(func() { // reader of permanently pinned blocks
		rnd := rand.New(rand.NewPCG(9, 9))
		for {
			select {
			case <-done:
				return
			default:
			}
			mu.Lock()
			var c cid.Cid
			var data []byte
			if len(permList) > 0 {
				c = permList[rnd.IntN(len(permList))]
				data = permanent[c]
			}
			mu.Unlock()
			if data == nil {
				continue
			}
			got, err := s.Get(ctx, c)
			if err != nil || string(got) != string(data) {
				t.Errorf("Get(%s) of a pinned block during GC: %d bytes, %v", c, len(got), err)
				return
			}
			if has, err := s.Has(ctx, c); err != nil || !has {
				t.Errorf("Has(%s) of a pinned block during GC: %v, %v", c, has, err)
				return
			}
		}
	})
	adding.Wait()
	close(done)
	others.Wait()
	if t.Failed() {
		return
	}

	// Unpin everything not permanent, collect, and check.
	mu.Lock()
	for c := range pinned {
		if _, ok := permanent[c]; !ok {
			delete(pinned, c)
		}
	}
	mu.Unlock()
	_, st, err := s.collect(ctx, roots, car.Links)
	if err != nil {
		t.Fatal(err)
	}
	compacted += st.Segments
	for c, data := range permanent {
		checkBlock(t, s, c, data)
	}
	for _, c := range garbage {
		if present(t, s, c) {
			t.Errorf("unpinned block %s survived the last Collect", c)
		}
	}
	counts, err := s.liveCounts()
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.log.sealed()
	for seg, size := range sealed {
		if live, ok := counts[seg]; ok && float64(live) <= DefaultCompactThreshold*float64(size) {
			t.Errorf("segment %d left at %d of %d bytes live", seg, live, size)
		}
	}
	if compacted+compactedAlone == 0 {
		t.Fatal("no segment was compacted: the test proves nothing")
	}
	t.Logf("%d collects, %d segments compacted by Collect, %d by Compact; %d blocks pinned", collects, compacted, compactedAlone, len(permanent))
}

// blockedIn reports whether a goroutine waits to lock an RWMutex inside
// function fn.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, fn) && strings.Contains(g, "(*RWMutex).Lock") {
			return true
		}
	}
	return false
}

// TestGetDuringCompaction: a Get that found a block in a segment before a
// compaction moved it reads it there: the compaction deletes the segment
// only after that read.
func TestGetDuringCompaction(t *testing.T) {
	smallSegments(t)
	s := openTest(t, t.TempDir())
	blocks := putSegments(t, s, 0, 11)
	target := blocks[4]
	located, proceed := make(chan struct{}), make(chan struct{})
	getHook = func(c cid.Cid) {
		if c.Equals(target.c) {
			close(located)
			<-proceed
		}
	}
	indexed := make(chan struct{})
	compactHook = func(step string) {
		if step == "indexed" {
			close(indexed)
		}
	}
	t.Cleanup(func() { getHook, compactHook = nil, nil })

	got := make(chan error, 1)
	go func() {
		data, err := s.Get(context.Background(), target.c)
		if err == nil && string(data) != string(target.data) {
			err = errors.New("other bytes")
		}
		got <- err
	}()
	<-located
	collected := make(chan error, 1)
	go func() {
		_, st, err := s.collect(context.Background(), rawRoots([]stored{target}), car.Links)
		if err == nil && st.Segments != 1 {
			err = fmt.Errorf("compacted %d segments; want 1", st.Segments)
		}
		collected <- err
	}()
	<-indexed
	// The entry points at the copy now; the segment must stay until the
	// Get that found it there has read it.
	for !blockedIn("(*blockLog).forget") && len(collected) == 0 {
		runtime.Gosched()
	}
	close(proceed)
	if err := <-got; err != nil {
		t.Fatalf("Get of a block being moved: %v", err)
	}
	if err := <-collected; err != nil {
		t.Fatal(err)
	}
	getHook, compactHook = nil, nil
	checkBlock(t, s, target.c, target.data)
}

// TestCloseDuringCompaction: Close during a compaction waits for it, and
// the compaction stops at its next run without changing the index; after
// reopening every live block is there and the segment is compacted then.
func TestCloseDuringCompaction(t *testing.T) {
	smallSegments(t)
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	blocks := putSegments(t, s, 0, 11)
	live := []stored{blocks[0], blocks[2], blocks[4]} // three runs: dead gaps between them
	closed := make(chan error, 1)
	compactHook = func(step string) {
		if step == "copying" {
			go func() { closed <- s.Close() }()
			for !s.closed.Load() {
				runtime.Gosched()
			}
		}
	}
	t.Cleanup(func() { compactHook = nil })
	if _, err := s.Collect(ctx, rawRoots(live), car.Links); !errors.Is(err, ErrClosed) {
		t.Fatalf("Collect closed while compacting: %v; want ErrClosed", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	compactHook = nil
	s = openTest(t, dir)
	for _, b := range live {
		checkBlock(t, s, b.c, b.data)
	}
	if !slices.Contains(segmentsOf(t, s), 1) {
		t.Fatal("segment 1 deleted by an interrupted compaction")
	}
	if st, err := s.Compact(ctx); err != nil || st.Segments != 1 {
		t.Fatalf("Compact after reopening: %+v, %v; want segment 1 compacted", st, err)
	}
	for _, b := range live {
		checkBlock(t, s, b.c, b.data)
	}
}
