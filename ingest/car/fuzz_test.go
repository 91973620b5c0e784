package car_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
)

// FuzzImport feeds arbitrary bytes to Import, seeded with every file of
// testdata/: it must not panic, must terminate, must fail only with one of
// the package's sentinels (the input is in memory, so there is no transport
// error to pass on), and must allocate no more than the default limits and
// the input's own size allow. Run it with
// `go test -run '^$' -fuzz FuzzImport -fuzztime 30s ./ingest/car`.
func FuzzImport(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.car")
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	pool := ingest.NewHashPool(2)
	f.Cleanup(pool.Stop)
	variants := [][]car.Option{
		nil,                     // what an upload that is pinned gets
		{car.AllowRoots(0, -1)}, // completeness of every root
		{car.AllowRoots(0, -1), car.CheckComplete(false)}, // no-pin
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range variants {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := car.Import(context.Background(), bytes.NewReader(data), pool, ingest.DiscardSink{}, opts...)
			runtime.ReadMemStats(&after)
			if err != nil && !wrapsSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			// A block is allocated only once 64 KiB of it has arrived, so
			// a few bytes cannot claim DefaultMaxBlockSize; parsing and
			// decoding cost a bounded multiple of the input.
			limit := uint64(1<<20 + 40*len(data))
			if got := after.TotalAlloc - before.TotalAlloc; got > limit {
				t.Fatalf("allocated %d bytes for a %d-byte input, limit %d", got, len(data), limit)
			}
		}
	})
}
