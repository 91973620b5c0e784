package car_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"
	gocar "github.com/ipld/go-car/v2"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
)

var (
	benchOnce sync.Once
	benchCAR  []byte
)

// benchInput is a 256 MiB CARv1 of a UnixFS file (boxo's balanced importer,
// raw leaves, 1 MiB blocks, CIDv1), made once per process.
func benchInput() []byte {
	benchOnce.Do(func() {
		root, blocks := unixfsDAG(randomBytes(256<<20, 7), 1<<20, 174, true, cid.V1Builder{Codec: cid.DagProtobuf, MhType: mh.SHA2_256})
		benchCAR = carV1([]cid.Cid{root}, blocks)
	})
	return benchCAR
}

// BenchmarkImport256MiB compares Import (hashing on the shared pool,
// completeness checked) with go-car v2's verifying BlockReader loop (what
// kubo's `dag import` and IPFS Cluster run, hashing serially) on the same
// 256 MiB CAR in the same run:
// `go test -run '^$' -bench Import256MiB -benchtime 5x ./ingest/car`.
func BenchmarkImport256MiB(b *testing.B) {
	data := benchInput()
	for _, workers := range []int{0, 1} {
		name := "ingestd"
		if workers == 1 {
			name = "ingestd-1worker"
		}
		b.Run(name, func(b *testing.B) {
			pool := ingest.NewHashPool(workers)
			defer pool.Stop()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{})
				if err != nil {
					b.Fatal(err)
				}
				if res.Bytes < 256<<20 {
					b.Fatalf("imported %d bytes", res.Bytes)
				}
			}
		})
	}
	b.Run("go-car-BlockReader", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			br, err := gocar.NewBlockReader(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			var n uint64
			for {
				blk, err := br.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n += uint64(len(blk.RawData()))
			}
			if n < 256<<20 {
				b.Fatalf("read %d bytes", n)
			}
		}
	})
}
