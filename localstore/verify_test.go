package localstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	cid "github.com/ipfs/go-cid"
)

// where returns the index entry of c.
func where(t *testing.T, s *Store, c cid.Cid) loc {
	t.Helper()
	at, ok, err := s.entry(blockKey(c).Bytes())
	if err != nil || !ok {
		t.Fatalf("no index entry for %s: %v", c, err)
	}
	return at
}

// flipByte changes one byte of a segment file behind the store's back (a
// bad sector, a bit flip): written through the page cache, which the log's
// buffered reads see.
func flipByte(t *testing.T, dir string, seg uint32, off uint64) {
	t.Helper()
	f, err := os.OpenFile(segmentName(dir+"/blocks", seg), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], int64(off)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b[:], int64(off)); err != nil {
		t.Fatal(err)
	}
}

// checkCorrupt asserts that Get(c) fails with ErrCorrupt, names c and its
// location, and returns no data.
func checkCorrupt(t *testing.T, s *Store, c cid.Cid, at loc) {
	t.Helper()
	data, err := s.Get(context.Background(), c)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get(%s) of a corrupted block: %v; want ErrCorrupt", c, err)
	}
	if data != nil {
		t.Fatalf("Get(%s) of a corrupted block returned %d bytes", c, len(data))
	}
	for _, want := range []string{c.String(), fmt.Sprintf("segment %d, offset %d", at.seg, at.off)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("Get(%s): error %q does not name %q", c, err, want)
		}
	}
}

// TestGetCorrupt: a block whose bytes changed on disk is never served, at
// whatever byte the damage is; its neighbours still are.
func TestGetCorrupt(t *testing.T) {
	f := func(name string, size int, at func(n uint32) uint64) {
		t.Helper()
		ctx := context.Background()
		dir := t.TempDir()
		s := openTest(t, dir)
		before, beforeData := testBlock(t, 1, 1000)
		c, data := testBlock(t, uint64(size), size)
		// 8 KiB after it: the page the log keeps in memory after a Sync
		// (the partial one the next write rewrites) holds none of c.
		after, afterData := testBlock(t, 2, 8<<10)
		for _, b := range []struct {
			c    cid.Cid
			data []byte
		}{{before, beforeData}, {c, data}, {after, afterData}} {
			if err := s.Put(ctx, b.c, b.data); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		if err := s.Sync(ctx); err != nil { // on disk, out of the write buffers
			t.Fatalf("%s: %v", name, err)
		}
		checkBlock(t, s, c, data)
		loc := where(t, s, c)
		flipByte(t, dir, loc.seg, loc.off+at(loc.n))
		checkCorrupt(t, s, c, loc)
		if has, err := s.Has(ctx, c); err != nil || !has {
			t.Fatalf("%s: Has = %v, %v: a corrupt block is still indexed", name, has, err)
		}
		checkBlock(t, s, before, beforeData)
		checkBlock(t, s, after, afterData)
	}
	f("first byte", 256<<10, func(uint32) uint64 { return 0 })
	f("middle byte", 256<<10, func(n uint32) uint64 { return uint64(n / 2) })
	f("last byte", 256<<10, func(n uint32) uint64 { return uint64(n - 1) })
	f("one-byte block", 1, func(uint32) uint64 { return 0 })
}

// TestGetLegacyEntry: an index entry written before entries had a CRC (16
// bytes) still reads, checked by re-hashing the data with the CID's hash
// function, and a corruption of it is caught the same way.
func TestGetLegacyEntry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	c, data := testBlock(t, 5, 100<<10)
	if err := s.Put(ctx, c, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	at := where(t, s, c)
	if !at.hasCRC {
		t.Fatal("Put wrote an entry without a CRC")
	}
	if err := s.db.Set(blockKey(c).Bytes(), at.bytes()[:16], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if where(t, s, c).hasCRC {
		t.Fatal("a 16-byte entry parsed with a CRC")
	}
	checkBlock(t, s, c, data)
	flipByte(t, dir, at.seg, at.off+uint64(at.n)/3)
	checkCorrupt(t, s, c, at)
}

// TestVerify: Verify reports exactly the corrupt blocks (a flipped byte; a
// block stored under another block's hash, which its CRC cannot catch)
// and the missing ones (their segment cut short), with their locations,
// and counts every block.
func TestVerify(t *testing.T) {
	smallSegments(t)
	ctx := context.Background()
	dir := t.TempDir()
	s := openTest(t, dir)
	blocks := putSegments(t, s, 0, 21) // segments 1 and 2 full, 3 current
	// Stored under a hash that is not its data's: Put does not hash.
	wrong, _ := testBlock(t, 100, 10)
	_, other := testBlock(t, 101, 10)
	if err := s.Put(ctx, wrong, other); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	flipped := where(t, s, blocks[4].c)
	flipByte(t, dir, flipped.seg, flipped.off+7)
	cut := where(t, s, blocks[19].c) // the last block of segment 2
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segmentName(dir+"/blocks", cut.seg), int64(cut.off+10)); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)

	got := map[string]Problem{}
	st, err := s.Verify(ctx, func(p Problem) { got[p.Cid.String()] = p })
	if err != nil {
		t.Fatal(err)
	}
	want := VerifyStats{Blocks: 22, Bytes: 21*100<<10 + 10, Corrupt: 2, Missing: 1}
	if st != want {
		t.Fatalf("Verify: %+v; want %+v", st, want)
	}
	f := func(c cid.Cid, at loc, sentinel error) {
		t.Helper()
		p, ok := got[c.String()]
		if !ok {
			t.Fatalf("Verify did not report %s; reported %v", c, got)
		}
		if !errors.Is(p.Err, sentinel) || p.Segment != at.seg || p.Offset != at.off || p.Length != at.n {
			t.Fatalf("Verify reported %s as %+v; want %v at %+v", c, p, sentinel, at)
		}
	}
	f(blocks[4].c, flipped, ErrCorrupt)
	f(wrong, where(t, s, wrong), ErrCorrupt)
	f(blocks[19].c, cut, ErrMissing)
	if len(got) != 3 {
		t.Fatalf("Verify reported %d problems; want 3: %v", len(got), got)
	}
	// The same walk on an intact store reports nothing.
	s2 := openTest(t, t.TempDir())
	putSegments(t, s2, 0, 21)
	if st, err := s2.Verify(ctx, func(p Problem) { t.Errorf("intact store: %+v", p) }); err != nil || st.Blocks != 21 {
		t.Fatalf("Verify of an intact store: %+v, %v", st, err)
	}
}
