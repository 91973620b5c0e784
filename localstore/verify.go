package localstore

import (
	"bytes"
	"errors"
	"hash/crc32"

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
