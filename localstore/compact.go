package localstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/boxo/datastore/dshelp"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
)

// Compaction reclaims the disk of the blocks Collect removed. Collect
// drops index entries only; their bytes stay in the segments. Collect
// also counts, for every sealed segment (every segment but the one appends
// go to), the bytes of the blocks still indexed in it, and records the
// count in pebble, in the batch that drops the entries
// (/blocklog/live/<segment>). A segment whose live bytes are at most
// Options.CompactThreshold of its size (half, by default) is compacted:
//
//  1. read the index for the entries that point into it (one scan of the
//     index, which holds 20 bytes per block);
//  2. copy each of those blocks, checked against its CRC, to the end of
//     the log, as Put appends;
//  3. make the copies durable (the log's fsync and watermark, pebble's
//     WAL), with fsync even under Options.NoSync, because step 5
//     deletes data that was durable;
//  4. point the entries at the copies and record the segment as holding
//     no live bytes, in one synced pebble batch;
//  5. forget the segment (waiting for reads in flight in it), delete
//     its file, and its count.
//
// A crash at any step loses no block: before step 4 the index points at
// the old segment, which is intact; after it, at copies made durable in
// step 3. A crash before step 4 leaves the copies (at most the segment's
// live bytes) as dead space in the segment they went to, which the next
// Collect counts; the old segment stays a candidate and the next
// compaction does it again. A crash after step 4 leaves a segment whose
// count is 0, which Open deletes.
//
// Concurrency: compaction never changes which blocks are stored, only
// where their bytes are; both places hold the same bytes until step 5,
// and step 5 waits for every read that found the old place (blockLog.segs).
// So it runs while adds run, without Hold: a Put of a block being moved
// finds it stored and writes nothing, and Puts of new blocks go to the
// log's end. It excludes Collect (Store.compactMu): a collection that
// dropped an entry after step 1 would see it restored in step 4, and its
// count would describe entries being moved. Collect compacts after its
// sweep, once it has let Holds run again.

// DefaultCompactThreshold is the default of Options.CompactThreshold: a
// segment at most half live is compacted, so compaction copies at most as
// many bytes as it frees.
const DefaultCompactThreshold = 0.5

var keyLivePrefix = []byte("/blocklog/live/") // + segment id (4 bytes): live bytes (8)

func liveKey(seg uint32) []byte {
	return binary.BigEndian.AppendUint32(bytes.Clone(keyLivePrefix), seg)
}

func liveValue(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// compactHook, when set by a test, is called at each step of a compaction
// with the step's name: "copying" (half the blocks copied), "copied",
// "synced", "indexed", "removed". The crash tests kill the process there.
var compactHook func(step string)

func atStep(step string) {
	if compactHook != nil {
		compactHook(step)
	}
}

// CompactStats describes what a compaction did.
type CompactStats struct {
	Segments int   // segment files deleted
	Copied   int64 // bytes of live blocks copied to the end of the log
	Freed    int64 // bytes of the deleted segment files
}

// Compact compacts every sealed segment whose live bytes, as the last
// Collect counted them, are at most Options.CompactThreshold of its size
// (see compact.go). Collect calls it; call it yourself to finish, sooner
// than the next Collect, a compaction a crash interrupted. It runs while
// Puts and Gets run, and waits for a running Collect.
//
// A segment holding a live block that fails its check (ErrCorrupt) is left
// as it is, so that Verify can still report the block where it is; the
// others are compacted, and the error (matching ErrCorrupt) names it.
func (s *Store) Compact(ctx context.Context) (CompactStats, error) {
	if s.closed.Load() {
		return CompactStats{}, ErrClosed
	}
	if err := s.writable(); err != nil {
		return CompactStats{}, fmt.Errorf("cannot compact: %w", err)
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	return s.compact(ctx)
}

// compact does Compact's work; the caller holds compactMu.
func (s *Store) compact(ctx context.Context) (CompactStats, error) {
	var st CompactStats
	if s.threshold < 0 {
		return st, nil
	}
	counts, err := s.liveCounts()
	if err != nil {
		return st, err
	}
	sealed := s.log.sealed()
	var segs []uint32
	for seg, live := range counts {
		if size, ok := sealed[seg]; ok && float64(live) <= s.threshold*float64(size) {
			segs = append(segs, seg)
		}
	}
	slices.Sort(segs)
	var corrupt []error
	for _, seg := range segs {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("cannot compact: %w", err)
		}
		if s.closed.Load() {
			return st, ErrClosed
		}
		err := s.compactSegment(seg, sealed[seg], &st)
		if errors.Is(err, ErrCorrupt) {
			corrupt = append(corrupt, err)
			continue
		}
		if err != nil {
			return st, err
		}
	}
	return st, errors.Join(corrupt...)
}

// liveCounts returns the live bytes Collect counted per segment.
func (s *Store) liveCounts() (map[uint32]uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: keyLivePrefix, UpperBound: prefixEnd(keyLivePrefix)})
	if err != nil {
		return nil, fmt.Errorf("cannot read segment counts: %w", err)
	}
	counts := map[uint32]uint64{}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) != len(keyLivePrefix)+4 || len(v) != 8 {
			continue
		}
		counts[binary.BigEndian.Uint32(k[len(keyLivePrefix):])] = binary.BigEndian.Uint64(v)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("cannot read segment counts: %w", err)
	}
	return counts, nil
}

// move is a block being copied out of a segment.
type move struct {
	key      []byte
	from, to loc
}

// compactSegment compacts segment seg of size bytes (see compact.go).
func (s *Store) compactSegment(seg uint32, size uint64, st *CompactStats) error {
	moves, err := s.entriesIn(seg, size)
	if err != nil {
		return err
	}
	slices.SortFunc(moves, func(a, b move) int { return cmp.Compare(a.from.off, b.from.off) }) // read in order
	copied, err := s.copyForward(seg, moves)
	if err != nil {
		return fmt.Errorf("cannot compact segment %d: %w", seg, err)
	}
	atStep("copied")
	if len(moves) > 0 {
		if err := s.sync(context.Background(), false); err != nil {
			return fmt.Errorf("cannot compact segment %d: %w", seg, err)
		}
	}
	atStep("synced")
	b := s.db.NewBatch()
	defer b.Close()
	for _, m := range moves {
		if err := b.Set(m.key, m.to.bytes(), nil); err != nil {
			return fmt.Errorf("cannot compact segment %d: %w", seg, err)
		}
	}
	if err := b.Set(liveKey(seg), liveValue(0), nil); err != nil {
		return fmt.Errorf("cannot compact segment %d: %w", seg, err)
	}
	if err := s.wrote(b.Commit(pebble.Sync)); err != nil {
		return fmt.Errorf("cannot compact segment %d: cannot move %d index entries: %w", seg, len(moves), err)
	}
	atStep("indexed")
	if err := s.removeSegment(seg); err != nil {
		return err
	}
	st.Segments++
	st.Copied += copied
	st.Freed += int64(size)
	return nil
}

// Compaction reads a segment in runs of up to compactRunSize bytes, each
// run spanning consecutive live blocks (and the dead gaps between them
// when shorter than compactMaxGap), with O_DIRECT where the log writes
// with it (no page cache to fill and evict), while the blocks of the
// previous run are appended. On the development VM, one buffered 256 KiB
// read per block, in turn with the appends, copied at 186 MB/s, runs with
// O_DIRECT at 250–325 (BenchmarkGC, 1 and 10 GiB stores). Reading through dead gaps of
// up to 1 MiB was not faster alone, and left adds running meanwhile 15% of
// their rate, against 70% without (one run each, 10 GiB store, a loaded
// machine: the reads of dead bytes take the disk from the adds), so gaps
// are read through only when smaller than a typical block.
const (
	compactRunSize = 8 << 20
	compactMaxGap  = 64 << 10
)

// readRun is a run of moves[lo:hi], read from the segment into buf (buf[0]
// is at the offset of moves[lo]).
type readRun struct {
	lo, hi int
	buf    []byte // the bytes of the run
	full   []byte // the buffer buf is in, to be reused
	err    error
}

// copyForward appends the blocks of moves (sorted by offset, all in
// segment seg) to the log, each checked against its CRC (or re-hashed),
// and records where each went in its to. It returns the bytes copied.
func (s *Store) copyForward(seg uint32, moves []move) (int64, error) {
	if len(moves) == 0 {
		return 0, nil
	}
	// The segment's last buffer may still be queued for writing (it was
	// sealed since the last Sync): reads go to the file.
	if err := s.log.written(); err != nil {
		return 0, err
	}
	var readAt func(p []byte, off int64) (int, error)
	align := uint64(1)
	if s.log.directOn() {
		df, err := os.OpenFile(segmentName(s.log.dir, seg), os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			return 0, fmt.Errorf("cannot open segment %d: %w", seg, err)
		}
		defer df.Close()
		readAt, align = df.ReadAt, directAlign
	} else {
		f, err := s.log.file(seg)
		if err != nil {
			return 0, err
		}
		readAt = f.ReadAt
	}
	stop := make(chan struct{})
	var reader sync.WaitGroup
	defer reader.Wait() // before the file closes
	defer close(stop)
	free := make(chan []byte, 2)
	free <- nil
	free <- nil
	ready := make(chan readRun)
	reader.Go(func() { // reads runs ahead of the appends; ends at stop
		for lo := 0; lo < len(moves); {
			start, end, hi := moves[lo].from.off, moves[lo].from.end(), lo+1
			for ; hi < len(moves); hi++ {
				next := moves[hi].from
				if next.off > end+compactMaxGap || next.end()-start > compactRunSize {
					break
				}
				end = max(end, next.end())
			}
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			// Aligned for O_DIRECT: start down, end up.
			astart, aend := start&^(align-1), (end+align-1)&^(align-1)
			if uint64(len(buf)) < aend-astart {
				buf = alignedBuf(int(max(aend-astart, compactRunSize+2*directAlign)))
			}
			n, err := readAt(buf[:aend-astart], int64(astart))
			if uint64(n) >= end-astart {
				err = nil // the end of the file is not aligned
			} else if err == nil {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				err = fmt.Errorf("cannot read segment %d at %d: %w", seg, start, err)
			}
			select {
			case ready <- readRun{lo, hi, buf[start-astart : end-astart], buf, err}:
			case <-stop:
				return
			}
			lo = hi
		}
	})
	var copied int64
	for done := 0; done < len(moves); {
		r := <-ready
		if r.err != nil {
			return copied, r.err
		}
		if s.closed.Load() { // Close waits for this compaction
			return copied, ErrClosed
		}
		base := moves[r.lo].from.off
		for i := r.lo; i < r.hi; i++ {
			m := &moves[i]
			data := r.buf[m.from.off-base : m.from.end()-base]
			h, err := dshelp.DsKeyToMultihash(datastore.RawKey(string(m.key[len(blocksPrefix.String()):])))
			if err != nil {
				return copied, fmt.Errorf("bad index key %q: %w", m.key, err)
			}
			if !intact(h, m.from, data) {
				return copied, corruptError(cid.NewCidV1(cid.Raw, h), m.from)
			}
			crc := m.from.crc
			if !m.from.hasCRC {
				crc = checksum(data)
			}
			m.to, err = s.log.append(data)
			if err != nil {
				return copied, s.fail(err)
			}
			m.to.crc, m.to.hasCRC = crc, true
			copied += int64(len(data))
			if i == len(moves)/2 {
				atStep("copying")
			}
		}
		done = r.hi
		free <- r.full
	}
	return copied, nil
}

// entriesIn returns the index entries of the blocks stored in segment seg
// of size bytes. Entries that point past its end (the block was lost, see
// Verify) are left alone: moved nowhere, they stay missing, and a Put of
// the block may replace them meanwhile.
func (s *Store) entriesIn(seg uint32, size uint64) ([]move, error) {
	prefix := []byte(blocksPrefix.String() + "/")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("cannot compact segment %d: %w", seg, err)
	}
	var moves []move
	for ok := it.First(); ok; ok = it.Next() {
		at, ok := parseLoc(it.Value())
		if !ok || at.seg != seg || at.end() > size {
			continue
		}
		moves = append(moves, move{key: bytes.Clone(it.Key()), from: at})
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("cannot compact segment %d: %w", seg, err)
	}
	return moves, nil
}

// removeSegment deletes a segment no index entry points into any more,
// then its count.
func (s *Store) removeSegment(seg uint32) error {
	f := s.log.forget(seg)
	if f != nil {
		f.Close()
	}
	path := segmentName(s.log.dir, seg)
	if err := s.log.fs.Remove(path); err != nil {
		return fmt.Errorf("cannot remove segment %s: %w", path, err)
	}
	// Not needed for safety (a segment that comes back has a count of
	// 0, and Open removes it again), but it frees the space for good.
	if err := syncDir(s.log.fs, s.log.dir); err != nil {
		return err
	}
	atStep("removed")
	if err := s.wrote(s.db.Delete(liveKey(seg), pebble.NoSync)); err != nil {
		return fmt.Errorf("cannot remove the count of segment %d: %w", seg, err)
	}
	return nil
}

// removeDeadSegments, at Open, deletes the segments that hold no live
// block (count 0: compacted before a crash deleted them, or emptied by a
// Collect before it could compact them), and the counts of segments that
// are gone (forgotten as unsynced).
func (s *Store) removeDeadSegments() error {
	counts, err := s.liveCounts()
	if err != nil {
		return err
	}
	sealed := s.log.sealed()
	for seg, live := range counts {
		if _, ok := sealed[seg]; !ok {
			if err := s.db.Delete(liveKey(seg), pebble.NoSync); err != nil {
				return fmt.Errorf("cannot remove the count of segment %d: %w", seg, err)
			}
			continue
		}
		if live == 0 {
			if err := s.removeSegment(seg); err != nil {
				return err
			}
		}
	}
	return nil
}
