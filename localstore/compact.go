package localstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

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
	var copied int64
	for i := range moves {
		m := &moves[i]
		data, err := s.log.read(m.from)
		if err != nil {
			return fmt.Errorf("cannot compact segment %d: %w", seg, err)
		}
		h, err := dshelp.DsKeyToMultihash(datastore.RawKey(string(m.key[len(blocksPrefix.String()):])))
		if err != nil {
			return fmt.Errorf("cannot compact segment %d: bad index key %q: %w", seg, m.key, err)
		}
		if !intact(h, m.from, data) {
			return fmt.Errorf("cannot compact segment %d: %w", seg, corruptError(cid.NewCidV1(cid.Raw, h), m.from))
		}
		crc := m.from.crc
		if !m.from.hasCRC {
			crc = checksum(data)
		}
		m.to, err = s.log.append(data)
		if err != nil {
			return fmt.Errorf("cannot compact segment %d: %w", seg, err)
		}
		m.to.crc, m.to.hasCRC = crc, true
		copied += int64(len(data))
		if i == len(moves)/2 {
			atStep("copying")
		}
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
	if err := b.Commit(pebble.Sync); err != nil {
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
	if err := s.db.Delete(liveKey(seg), pebble.NoSync); err != nil {
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
