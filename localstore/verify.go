package localstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/boxo/datastore/dshelp"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	mh "github.com/multiformats/go-multihash"
)

// ErrCorrupt is matched by the error of a read (Get, Verify, compaction)
// whose data does not match the block's checksum: the bytes in the block
// log changed after they were written. The error names the CID and the
// location (segment, offset, length). A corrupt block is never served.
var ErrCorrupt = errors.New("localstore: block data corrupt")

// ErrMissing is matched by the Problems Verify reports for an index entry
// whose data the block log does not hold: its segment file is gone or
// shorter than the entry says. Get reports such a block as absent
// (ErrNotFound); Verify tells it apart from a block that was never stored.
var ErrMissing = errors.New("localstore: block data missing")

// castagnoli is the CRC-32C table: SSE 4.2 and ARMv8 compute it in
// hardware (hash/crc32 uses them), at a few percent of the cost of a read;
// BenchmarkReadCheck and BENCHMARKS.md have the figures.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }

// intact reports whether data is the block at at, whose multihash is h:
// by the CRC of its index entry, or, for an entry written before entries
// had one, by re-hashing it with h's function. A block whose hash function
// go-multihash does not know (the ingest paths reject those) cannot be
// checked without a CRC and counts as intact.
func intact(h mh.Multihash, at loc, data []byte) bool {
	if at.hasCRC {
		return checksum(data) == at.crc
	}
	ok, known := rehash(h, data)
	return ok || !known
}

// rehash reports whether data hashes to h; known is false when h's hash
// function is not available.
func rehash(h mh.Multihash, data []byte) (ok, known bool) {
	dec, err := mh.Decode(h)
	if err != nil {
		return false, false
	}
	sum, err := mh.Sum(data, dec.Code, dec.Length)
	if err != nil {
		return false, false
	}
	return bytes.Equal(sum, h), true
}

// Problem is a block Verify found damaged.
type Problem struct {
	// Cid is the block's multihash as a CIDv1 raw, as Collect reports
	// blocks (the index is keyed by multihash).
	Cid cid.Cid
	// Segment, Offset and Length are where its index entry says it is.
	Segment uint32
	Offset  uint64
	Length  uint32
	// Err matches ErrCorrupt (the bytes are not the block's, or cannot be
	// read, or the index entry itself is damaged) or ErrMissing (the log
	// does not hold them).
	Err error
}

// VerifyStats sums up a Verify.
type VerifyStats struct {
	Blocks  int   // index entries checked
	Bytes   int64 // bytes read and re-hashed
	Corrupt int   // Problems matching ErrCorrupt
	Missing int   // Problems matching ErrMissing
}

// Verify reads every block the index holds and re-hashes it with the hash
// function of its multihash (the CID is the checksum; Get checks the
// cheaper CRC-32C instead), calling fn for each block that is corrupt or
// missing. Blocks whose hash function go-multihash does not know are
// checked against their CRC. It runs alongside every other method: a block
// removed meanwhile is skipped, one moved by a compaction is read where it
// went. It stops early only when ctx ends or the index cannot be read; the
// stats count what was checked until then.
//
// It reads blocks in the index's order (by hash), one at a time: about the
// disk's random-read rate or one core's SHA-256 rate, whichever is lower.
func (s *Store) Verify(ctx context.Context, fn func(Problem)) (VerifyStats, error) {
	var st VerifyStats
	if s.closed.Load() {
		return st, ErrClosed
	}
	prefix := []byte(blocksPrefix.String() + "/")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return st, fmt.Errorf("cannot verify blocks: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return st, fmt.Errorf("cannot verify blocks: %w", err)
		}
		key := it.Key()
		h, err := dshelp.DsKeyToMultihash(datastore.RawKey(string(key[len(prefix)-1:])))
		if err != nil {
			continue // not a block key
		}
		p, checked := s.verifyBlock(key, h)
		if !checked {
			continue
		}
		st.Blocks++
		st.Bytes += int64(p.Length)
		if p.Err == nil {
			continue
		}
		if errors.Is(p.Err, ErrMissing) {
			st.Missing++
		} else {
			st.Corrupt++
		}
		fn(p)
	}
	if err := it.Close(); err != nil {
		return st, fmt.Errorf("cannot verify blocks: %w", err)
	}
	return st, nil
}

// verifyBlock checks the block under key, whose multihash is h, looking its
// entry up again (the iterator's may be stale); checked is false if it is
// gone. The returned Problem has a nil Err when the block is intact.
func (s *Store) verifyBlock(key []byte, h mh.Multihash) (p Problem, checked bool) {
	p.Cid = cid.NewCidV1(cid.Raw, h)
	s.log.segs.RLock()
	at, ok, err := s.entry(key)
	var data []byte
	valid := ok && err == nil && s.log.valid(at)
	if valid {
		data, err = s.log.read(at)
	}
	s.log.segs.RUnlock()
	if !ok && err == nil {
		return p, false
	}
	p.Segment, p.Offset, p.Length = at.seg, at.off, at.n
	switch {
	case err != nil:
		p.Err = fmt.Errorf("cannot read block %s at segment %d, offset %d (%d bytes): %w: %w", p.Cid, at.seg, at.off, at.n, ErrCorrupt, err)
	case !valid:
		p.Err = fmt.Errorf("block %s at segment %d, offset %d (%d bytes): %w", p.Cid, at.seg, at.off, at.n, ErrMissing)
	default:
		good, known := rehash(h, data)
		if !known && at.hasCRC {
			good, known = checksum(data) == at.crc, true
		}
		if known && !good {
			p.Err = corruptError(p.Cid, at)
		}
	}
	return p, true
}
