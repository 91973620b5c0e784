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
// those daemons. Each iteration sends the same new blocks both ways,
// alternating which goes first, with an (untimed) repo/gc before each send
// so that kubo stores every block every time and the repositories do not
// grow between runs. It reports both throughputs and fanout/baseline;
// ns/op is the fanout's time.
//
//	go test -run='^$' -bench=BenchmarkFanout -benchtime=3x ./blockfanout/
func BenchmarkFanout(b *testing.B) {
	ds := startDaemons(b, 3)
	// Warm up: kubo's flatfs creates its shard directories on first use,
	// which would slow whichever send comes first.
	warm := benchBlocks(b, 0)
	for _, d := range ds {
		if err := baselinePut(http.DefaultClient, d, warm); err != nil {
			b.Fatal(err)
		}
	}
	warm = nil
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	var seed uint64
	for _, n := range []int{1, 3} {
		targets := ds[:n]
		f := startFanout(b, Config{Peers: peerConfigs(targets)})
		fanout := func(blocks []testBlock) {
			s := f.NewSession(context.Background(), f.peerList(), n)
			putAll(b, s, blocks)
			if _, err := s.Close(context.Background()); err != nil {
				b.Fatalf("Close: %v", err)
			}
		}
		baseline := func(blocks []testBlock) {
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
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var tFanout, tBaseline time.Duration
			timed := func(send func([]testBlock), blocks []testBlock) time.Duration {
				repoGC(b, targets)
				start := time.Now()
				send(blocks)
				return time.Since(start)
			}
			runs := 0
			for b.Loop() {
				seed++
				blocks := benchBlocks(b, seed)
				if runs%2 == 0 {
					tFanout += timed(fanout, blocks)
					tBaseline += timed(baseline, blocks)
				} else {
					tBaseline += timed(baseline, blocks)
					tFanout += timed(fanout, blocks)
				}
				runs++
			}
			mb := float64(benchTotal) * float64(runs) / 1e6
			b.ReportMetric(float64(tFanout.Nanoseconds())/float64(runs), "ns/op")
			b.ReportMetric(mb/tFanout.Seconds(), "fanout-MB/s")
			b.ReportMetric(mb/tBaseline.Seconds(), "baseline-MB/s")
			b.ReportMetric(tBaseline.Seconds()/tFanout.Seconds(), "ratio")
		})
	}
}

// repoGC removes every unpinned block from the daemons.
func repoGC(b *testing.B, ds []*kubotest.Daemon) {
	for _, d := range ds {
		if _, err := d.CallErr(context.Background(), "repo/gc", nil); err != nil {
			b.Fatalf("repo/gc: %v", err)
		}
	}
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
