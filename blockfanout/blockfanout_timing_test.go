package blockfanout

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"testing"
	"time"

	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/internal/kubotest"
)

const (
	benchTotal     = 512 << 20
	benchBlockSize = 256 << 10
)

// BenchmarkFanout sends 512 MiB of 256 KiB raw blocks to 1 and to 3 kubo
// daemons, through a Session and through a plain client that streams the
// same blocks to each daemon's block/put directly (one multipart request
// per daemon, concurrently): the most a replicating sender can get from
// those daemons. Every iteration sends new random blocks, so kubo always
// stores them (no "already have it" shortcut). It logs fanout/baseline.
//
//	go test -run='^$' -bench=BenchmarkFanout -benchtime=3x ./blockfanout/
func BenchmarkFanout(b *testing.B) {
	ds := startDaemons(b, 3)
	var seed uint64
	newBlocks := func(b *testing.B) []testBlock {
		b.StopTimer()
		defer b.StartTimer()
		seed++
		return benchBlocks(b, seed)
	}
	// Warm up: kubo's flatfs creates its shard directories on first use,
	// which would slow whichever run comes first.
	warm := benchBlocks(b, 0)
	for _, d := range ds {
		if err := baselinePut(http.DefaultClient, d, warm); err != nil {
			b.Fatal(err)
		}
	}
	warm = nil
	for _, n := range []int{1, 3} {
		targets := ds[:n]
		f := startFanout(b, Config{Peers: peerConfigs(targets)})
		var fanout, baseline float64 // MB/s of the last run of each
		b.Run(fmt.Sprintf("peers=%d/fanout", n), func(b *testing.B) {
			b.SetBytes(benchTotal)
			b.ReportAllocs()
			for b.Loop() {
				blocks := newBlocks(b)
				s := f.NewSession(context.Background(), f.peers, n)
				putAll(b, s, blocks)
				if _, err := s.Close(context.Background()); err != nil {
					b.Fatalf("Close: %v", err)
				}
			}
			fanout = mbps(b)
		})
		b.Run(fmt.Sprintf("peers=%d/baseline", n), func(b *testing.B) {
			b.SetBytes(benchTotal)
			b.ReportAllocs()
			client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
			for b.Loop() {
				blocks := newBlocks(b)
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i, d := range targets {
					wg.Go(func() { errs[i] = baselinePut(client, d, blocks) })
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			baseline = mbps(b)
		})
		if fanout > 0 && baseline > 0 {
			b.Logf("peers=%d: fanout %.0f MB/s, baseline %.0f MB/s, ratio %.2f", n, fanout, baseline, fanout/baseline)
		}
	}
}

func mbps(b *testing.B) float64 {
	return float64(benchTotal) * float64(b.N) / b.Elapsed().Seconds() / 1e6
}

// benchBlocks makes benchTotal bytes of random 256 KiB raw blocks.
func benchBlocks(b *testing.B, seed uint64) []testBlock {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	blocks := make([]testBlock, benchTotal/benchBlockSize)
	for i := range blocks {
		data := make([]byte, benchBlockSize)
		rng.Read(data)
		blocks[i] = testBlock{c: rawCid(b, data, mh.SHA2_256), data: data}
	}
	return blocks
}

// baselinePut is the plain client: one streaming block/put request to d
// written with mime/multipart through a pipe, every answer line counted.
func baselinePut(client *http.Client, d *kubotest.Daemon, blocks []testBlock) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, blk := range blocks {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", `form-data; name="file"; filename="`+blk.c.String()+`"`)
			h.Set("Content-Type", "application/octet-stream")
			w, err := mw.CreatePart(h)
			if err == nil {
				_, err = w.Write(blk.data)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		d.URL()+"/api/v0/block/put?cid-codec=raw&mhtype=sha2-256&mhlen=32&pin=false&allow-big-block=true", pr)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("baseline block/put: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	acks := 0
	for sc.Scan() {
		acks++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if acks != len(blocks) {
		return fmt.Errorf("baseline block/put: %d acks for %d blocks (stream error %q)", acks, len(blocks), resp.Trailer.Get("X-Stream-Error"))
	}
	return nil
}
