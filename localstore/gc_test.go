package localstore

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	format "github.com/ipfs/go-ipld-format"

	"github.com/ingestd/ingestd/ingest/car"
)

// dagNode stores a dag-pb node linking to children and returns its CID.
func dagNode(t *testing.T, s *Store, children ...cid.Cid) cid.Cid {
	t.Helper()
	nd := merkledag.NodeWithData([]byte{8, 1}) // a UnixFS directory
	for i, c := range children {
		if err := nd.AddRawLink(string(rune('a'+i)), &format.Link{Cid: c, Size: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(context.Background(), nd.Cid(), nd.RawData()); err != nil {
		t.Fatal(err)
	}
	return nd.Cid()
}

func put(t *testing.T, s *Store, seed uint64) cid.Cid {
	t.Helper()
	c, data := testBlock(t, seed, 100+int(seed))
	if err := s.Put(context.Background(), c, data); err != nil {
		t.Fatal(err)
	}
	return c
}

func rootsOf(rs ...Root) func(yield func(Root) error) error {
	return func(yield func(Root) error) error {
		for _, r := range rs {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	}
}

func present(t *testing.T, s *Store, c cid.Cid) bool {
	t.Helper()
	_, err := s.Get(context.Background(), c)
	if err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestCollect: a recursive root keeps its whole DAG, a direct root only
// itself, everything else is removed and reported as kubo reports it
// (CIDv1 raw of the multihash).
func TestCollect(t *testing.T) {
	s := openTest(t, t.TempDir())
	l1, l2, l3, garbage := put(t, s, 1), put(t, s, 2), put(t, s, 3), put(t, s, 4)
	sub := dagNode(t, s, l2)
	root := dagNode(t, s, l1, sub)
	direct := dagNode(t, s, l3)
	// A root whose DAG is incomplete: kept as far as it goes.
	missingChild, _ := testBlock(t, 99, 10)
	partial := dagNode(t, s, missingChild)
	// A block pinned directly and also inside a recursive pin, the direct
	// pin seen first: its links are live through the recursive one.
	l5 := put(t, s, 5)
	both := dagNode(t, s, l5)
	outer := dagNode(t, s, both)

	removed, err := s.Collect(t.Context(), rootsOf(Root{root, true}, Root{direct, false}, Root{partial, true}, Root{both, false}, Root{outer, true}), car.Links)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []cid.Cid{root, sub, l1, l2, direct, partial, l5, both, outer} {
		if !present(t, s, c) {
			t.Errorf("live block %s was removed", c)
		}
	}
	for _, c := range []cid.Cid{garbage, l3} {
		if present(t, s, c) {
			t.Errorf("garbage %s was kept", c)
		}
	}
	got := map[string]bool{}
	for _, c := range removed {
		if c.Type() != cid.Raw || c.Version() != 1 {
			t.Errorf("removed %s is not a CIDv1 raw", c)
		}
		got[string(c.Hash())] = true
	}
	if len(removed) != 2 || !got[string(garbage.Hash())] || !got[string(l3.Hash())] {
		t.Fatalf("removed %v; want %s and %s", removed, garbage, l3)
	}
	// Nothing left to remove.
	again, err := s.Collect(t.Context(), rootsOf(Root{root, true}, Root{direct, false}, Root{partial, true}, Root{both, false}, Root{outer, true}), car.Links)
	if err != nil || len(again) != 0 {
		t.Fatalf("second collect: %v, %v", again, err)
	}
}

// blockedInCollect reports whether a goroutine waits for the collection
// lock inside Collect.
func blockedInCollect() bool {
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "(*Store).Collect") && strings.Contains(g, "(*RWMutex).Lock") {
			return true
		}
	}
	return false
}

// TestCollectWaitsForHolds: a block stored under a Hold (an add still
// running, whose pin is not recorded yet) survives a collection started
// meanwhile, because the collection waits for the hold and then sees the
// pin.
func TestCollectWaitsForHolds(t *testing.T) {
	s := openTest(t, t.TempDir())
	release := s.Hold()
	b := put(t, s, 7)
	pinned := false
	roots := func(yield func(Root) error) error {
		if pinned {
			return yield(Root{b, true})
		}
		return nil
	}
	done := make(chan []cid.Cid, 1)
	go func() {
		removed, err := s.Collect(context.Background(), roots, car.Links)
		if err != nil {
			t.Error(err)
		}
		done <- removed
	}()
	// Poll until the collection waits for the hold (or, if holds did not
	// work, has already finished).
	for deadline := time.Now().Add(10 * time.Second); !blockedInCollect() && len(done) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("Collect neither waits nor finishes")
		}
		time.Sleep(time.Millisecond)
	}
	pinned = true // the add records its pin, then releases
	release()
	release() // twice is harmless
	removed := <-done
	if len(removed) != 0 || !present(t, s, b) {
		t.Fatalf("a block of a running add was collected: removed %v", removed)
	}
}

// TestCollectStopsOnCorrupt: a block reached from a root that cannot be
// read (here corrupt) stops the collection before anything is removed:
// what it links to cannot be known.
func TestCollectStopsOnCorrupt(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	child, garbage := put(t, s, 1), put(t, s, 2)
	root := dagNode(t, s, child)
	// 8 KiB after it, pinned too: the page the log keeps in memory after
	// Sync holds none of the root.
	filler, fillerData := testBlock(t, 3, 8<<10)
	if err := s.Put(t.Context(), filler, fillerData); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	at := where(t, s, root)
	flipByte(t, dir, at.seg, at.off+uint64(at.n)/2)
	removed, err := s.Collect(t.Context(), rootsOf(Root{root, true}, Root{filler, true}), car.Links)
	if !errors.Is(err, ErrCorrupt) || len(removed) != 0 {
		t.Fatalf("Collect over a corrupt root: removed %v, %v; want nothing, ErrCorrupt", removed, err)
	}
	if !present(t, s, child) || !present(t, s, garbage) {
		t.Fatal("Collect removed blocks although it could not read a root")
	}
}
