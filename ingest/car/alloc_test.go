package car_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"testing"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
)

// allocated returns the bytes f allocates (on every goroutine).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestImportAllocations checks that a few bytes of input cannot make Import
// allocate much more than they are: neither a section claiming a full-size
// block, nor a header or block whose CBOR claims a huge string, nor a
// dag-cbor block made of millions of tiny items.
func TestImportAllocations(t *testing.T) {
	pool := ingest.NewHashPool(2)
	defer pool.Stop()
	d := newTestDAGs()
	hdr := headerBytes(1, []cid.Cid{d.cborRoot})

	f := func(name string, data []byte, limit uint64) {
		t.Helper()
		run := func() {
			_, _ = car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{})
		}
		run() // warm the read buffer pool
		if got := allocated(run); got > limit {
			t.Errorf("%s: %d-byte input allocated %d bytes, want at most %d", name, len(data), got, limit)
		}
	}

	// A section that claims a 2 MiB block and then ends.
	claim := append(slices.Clone(hdr), binary.AppendUvarint(nil, uint64(d.cborRoot.ByteLen()+car.DefaultMaxBlockSize))...)
	claim = append(claim, d.cborRoot.Bytes()...)
	// The limits are an order of magnitude below the claims (2 MiB, 30 MiB)
	// and loose enough for what the race detector and other goroutines
	// allocate meanwhile (TotalAlloc counts the whole process).
	f("claimed block", append(claim, make([]byte, 1000)...), 256<<10)

	// A header whose CBOR claims a 30 MiB string (refmt allows 32 MiB).
	bad := []byte{0xa1, 0x7a, 0x01, 0xe0, 0x00, 0x00, 0x61, 0x61}
	f("header string claim", append(binary.AppendUvarint(nil, uint64(len(bad))), bad...), 256<<10)

	// A dag-cbor root whose CBOR claims a 30 MiB string.
	blk := rawCBOR([]byte{0x7a, 0x01, 0xe0, 0x00, 0x00, 0x61})
	f("block string claim", carV1([]cid.Cid{blk.cid}, []carBlock{blk}), 256<<10)

	// A 2 MiB dag-cbor root that is a list of zeros: into basicnode this
	// takes about 140 MB; here the block itself and little more.
	n := car.DefaultMaxBlockSize - 5
	zeros := append([]byte{0x9a, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, make([]byte, n)...)
	blk = rawCBOR(zeros)
	f("cbor list of zeros", carV1([]cid.Cid{blk.cid}, []carBlock{blk}), 3*car.DefaultMaxBlockSize)
}

// rawCBOR is a dag-cbor block of the given bytes, valid or not.
func rawCBOR(data []byte) carBlock {
	c, err := cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: 0x12, MhLength: -1}.Sum(data)
	if err != nil {
		panic(err)
	}
	return carBlock{c, data}
}
