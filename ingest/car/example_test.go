package car_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/car"
)

func ExampleImport() {
	pool := ingest.NewHashPool(0)
	defer pool.Stop()
	f, err := os.Open("testdata/valid-v1-unixfs.car")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	res, err := car.Import(context.Background(), f, pool, ingest.DiscardSink{}, car.MaxBlockSize(1<<20))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Roots[0], res.Blocks, res.Bytes, res.RootSize)

	f, err = os.Open("testdata/missing-intermediate.car")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	_, err = car.Import(context.Background(), f, pool, ingest.DiscardSink{})
	// The message names the missing block and what links to it; classify
	// errors with errors.Is.
	fmt.Println(errors.Is(err, car.ErrMissingBlock))
	// Output:
	// QmaYcvon2F3FDW7QC84PwXkRoAm7qrxDmF2Nc7qevBj7nm 14 10976 10240
	// true
}
