package localstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// benchBlockSize is the default chunk of an add (size-262144).
const benchBlockSize = 256 << 10

// benchCid returns a distinct CID for n without hashing a block: the store
// does not verify hashes, and hashing 256 KiB per op would measure sha256
// rather than the store.
func benchCid(b *testing.B, n uint64) cid.Cid {
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], n)
	h, err := mh.Sum(seed[:], mh.SHA2_256, -1)
	if err != nil {
		b.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

// benchData is incompressible, like most uploaded media.
func benchData(b *testing.B) []byte {
	data := make([]byte, benchBlockSize)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkPut measures Puts of distinct 256 KiB blocks followed by one
// Sync, as an add does (the Sync is inside the timed region). Run it with a
// large -benchtime (e.g. -benchtime=8000x, 2 GiB) to see flushes and
// compactions rather than the first memtable.
func BenchmarkPut(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		s := openBench(b)
		data := benchData(b)
		ctx := context.Background()
		b.SetBytes(benchBlockSize)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := s.Put(ctx, benchCid(b, uint64(i)), data); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		s := openBench(b)
		data := benchData(b)
		ctx := context.Background()
		var next atomic.Uint64
		b.SetBytes(benchBlockSize)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Put(ctx, benchCid(b, next.Add(1)), data); err != nil {
					b.Error(err)
					return
				}
			}
		})
		if err := s.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPutDuplicate measures Put of blocks that are already stored
// (the has-before-put path): still in the memtable, and flushed to blob
// files (1000 blocks, 250 MiB, more than the block cache).
func BenchmarkPutDuplicate(b *testing.B) {
	ctx := context.Background()
	b.Run("memtable", func(b *testing.B) {
		s := openBench(b)
		data := benchData(b)
		c := benchCid(b, 0)
		if err := s.Put(ctx, c, data); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchBlockSize)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := s.Put(ctx, c, data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("flushed", func(b *testing.B) {
		const n = 1000
		dir := b.TempDir()
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		data := benchData(b)
		cids := make([]cid.Cid, n)
		for i := range cids {
			cids[i] = benchCid(b, uint64(i))
			if err := s.Put(ctx, cids[i], data); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(); err != nil { // flushes the memtables
			b.Fatal(err)
		}
		s, err = Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.SetBytes(benchBlockSize)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := s.Put(ctx, cids[i%n], data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func openBench(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	return s
}

// BenchmarkReadCheck measures what checking a block costs on the read path:
// the read alone (from the page cache, as a gateway re-reading hot blocks
// sees it; a read from the disk costs more and makes the check relatively
// cheaper), the read and a CRC-32C of it (what Get does), and the read and
// a SHA-256 re-hash (the other choice: the CID's multihash as the
// checksum). Get is the whole method, index lookup included.
func BenchmarkReadCheck(b *testing.B) {
	for _, size := range []int{256 << 10, 1 << 20} {
		s := openBench(b)
		ctx := context.Background()
		const blocks = 64 // 16–64 MiB: fits the page cache, not the CPU caches
		data := make([]byte, size)
		cids := make([]cid.Cid, blocks)
		for i := range cids {
			if _, err := rand.Read(data); err != nil {
				b.Fatal(err)
			}
			h, err := mh.Sum(data, mh.SHA2_256, -1)
			if err != nil {
				b.Fatal(err)
			}
			cids[i] = cid.NewCidV1(cid.Raw, h)
			if err := s.Put(ctx, cids[i], data); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		read := func(i int) ([]byte, loc) {
			s.log.segs.RLock()
			defer s.log.segs.RUnlock()
			at, ok, err := s.locate(blockKey(cids[i%blocks]).Bytes())
			if err != nil || !ok {
				b.Fatal(ok, err)
			}
			d, err := s.log.read(at)
			if err != nil {
				b.Fatal(err)
			}
			return d, at
		}
		name := fmt.Sprintf("%dKiB/", size>>10)
		b.Run(name+"read", func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				read(i)
			}
		})
		b.Run(name+"read+crc32c", func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				d, at := read(i)
				if checksum(d) != at.crc {
					b.Fatal("crc mismatch")
				}
			}
		})
		b.Run(name+"read+sha256", func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				d, _ := read(i)
				if ok, _ := rehash(cids[i%blocks].Hash(), d); !ok {
					b.Fatal("hash mismatch")
				}
			}
		})
		b.Run(name+"Get", func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if _, err := s.Get(ctx, cids[i%blocks]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"crc32c-only", func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				checksum(data)
			}
		})
	}
}

// BenchmarkGC measures a garbage collection of a store of
// $LOCALSTORE_BENCH_GC_MIB MiB (default 256; BENCHMARKS.md uses 10240) of
// distinct 256 KiB blocks, half of them unpinned, and adds running during
// it. Run it with -benchtime=1x: one op fills a store, which b.TempDir
// removes afterwards.
//
//   - interleaved: every other block is unpinned, so every segment is half
//     live and compaction copies half of the store to free all of it (the
//     worst case at the default threshold);
//   - contiguous: the second half is unpinned, so whole segments are dead
//     and compaction deletes them without copying.
//
// Each layout runs alone (nothing else on the store) and with-adds (adds
// running from before the collection starts until it ends). Reported: the
// mark and sweep time (sweep-s), the compaction time (compact-s), the
// bytes freed and copied, the net reclaimed rate over the whole collection
// (reclaimed-MB/s: freed minus copied, per second), and the rate of adds
// (Puts of 64 MiB under Hold, then Sync, as the REST layer does) alone,
// before the collection, and during it, and their ratio.
func BenchmarkGC(b *testing.B) {
	mib := 256
	if v := os.Getenv("LOCALSTORE_BENCH_GC_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		mib = n
	}
	for _, layout := range []string{"interleaved", "contiguous"} {
		for _, adds := range []bool{false, true} {
			name := layout + "/alone"
			if adds {
				name = layout + "/with-adds"
			}
			b.Run(name, func(b *testing.B) {
				for range b.N {
					benchGC(b, mib, layout == "interleaved", adds)
				}
			})
		}
	}
}

func benchGC(b *testing.B, mib int, interleaved, withAdds bool) {
	b.StopTimer()
	ctx := context.Background()
	// Real 1 GiB segments for a store of 8 GiB and more; smaller stores
	// get eight segments.
	defer func(old uint64) { maxSegmentSize = old }(maxSegmentSize)
	maxSegmentSize = min(1<<30, uint64(mib)<<20/8)
	s := openBench(b)
	data := benchData(b)
	n := mib << 20 / benchBlockSize
	var mu sync.Mutex
	var roots []cid.Cid
	next := uint64(0)
	var putBytes atomic.Int64 // bytes put by adds so far
	// add puts 64 MiB of new blocks under a Hold, syncs, pins them.
	add := func() {
		release := s.Hold()
		defer release()
		mu.Lock()
		first := next
		next += 256
		mu.Unlock()
		var added []cid.Cid
		for i := range uint64(256) {
			c := benchCid(b, first+i)
			if err := s.Put(ctx, c, data); err != nil {
				b.Error(err)
				return
			}
			putBytes.Add(benchBlockSize)
			added = append(added, c)
		}
		if err := s.Sync(ctx); err != nil {
			b.Error(err)
			return
		}
		mu.Lock()
		roots = append(roots, added...)
		mu.Unlock()
	}

	// Fill: n blocks, half of them pinned.
	for i := range n {
		c := benchCid(b, next)
		next++
		if err := s.Put(ctx, c, data); err != nil {
			b.Fatal(err)
		}
		if interleaved && i%2 == 0 || !interleaved && i < n/2 {
			roots = append(roots, c)
		}
	}
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	// Adds alone: a quarter of the store's size, at least 256 MiB.
	start := time.Now()
	for putBytes.Load() < max(int64(mib)<<20/4, 256<<20) {
		add()
	}
	aloneRate := float64(putBytes.Load()) / time.Since(start).Seconds() / 1e6

	rootsFn := func(yield func(Root) error) error {
		mu.Lock()
		rs := slices.Clone(roots)
		mu.Unlock()
		for _, c := range rs {
			if err := yield(Root{Cid: c, Recursive: true}); err != nil {
				return err
			}
		}
		return nil
	}
	// The collection, with adds running until it is done.
	done := make(chan struct{})
	var adders sync.WaitGroup
	if withAdds {
		adders.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				add()
			}
		})
	}
	b.StartTimer()
	start = time.Now()
	before := putBytes.Load()
	s.compactMu.Lock()
	if _, err := s.markAndSweep(ctx, rootsFn, nil); err != nil {
		b.Fatal(err)
	}
	swept := time.Now()
	st, err := s.compact(ctx)
	s.compactMu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	end := time.Now()
	during := putBytes.Load() - before
	b.StopTimer()
	close(done)
	adders.Wait()
	total := end.Sub(start).Seconds()
	duringRate := float64(during) / total / 1e6
	b.ReportMetric(swept.Sub(start).Seconds(), "sweep-s")
	b.ReportMetric(end.Sub(swept).Seconds(), "compact-s")
	b.ReportMetric(float64(st.Freed)/1e6, "freed-MB")
	b.ReportMetric(float64(st.Copied)/1e6, "copied-MB")
	b.ReportMetric(float64(st.Freed-st.Copied)/1e6/total, "reclaimed-MB/s")
	b.ReportMetric(aloneRate, "adds-alone-MB/s")
	if withAdds {
		b.ReportMetric(duringRate, "adds-during-MB/s")
		b.ReportMetric(duringRate/aloneRate, "adds-ratio")
	}
}
