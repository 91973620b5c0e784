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
	"os"
	"strconv"
	"strings"
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
// daemons three ways: through a Session with dag/import segments (the
// default), through a Session with block/put (Config.BlockPut), and
// through a plain client that streams the same blocks to each daemon's
// block/put directly (one mime/multipart request per daemon through a
// pipe, concurrently, as IPFS Cluster's adder does). Each iteration sends
// the same new blocks every way, rotating which goes first, with an
// (untimed) repo/gc before each send so that kubo stores every block every
// time. It reports each throughput, each one's ratio to the plain client,
// and the daemons' CPU seconds per send (utime+stime from /proc): the
// measure of what each wire costs kubo, steadier than wall time on a
// shared machine. ns/op is the dag/import session's time.
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
		session := func(f *Fanout) func([]testBlock) {
			return func(blocks []testBlock) {
				s := f.NewSession(context.Background(), f.peerList(), n)
				putAll(b, s, blocks)
				if _, err := s.Close(context.Background()); err != nil {
					b.Fatalf("Close: %v", err)
				}
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
		sides := []struct {
			name string
			send func([]testBlock)
		}{
			{"import", session(startFanout(b, Config{Peers: peerConfigs(targets)}))},
			{"blockput", session(startFanout(b, Config{Peers: peerConfigs(targets), BlockPut: true}))},
			{"baseline", baseline},
		}
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			took := make([]time.Duration, len(sides))
			cpu := make([]float64, len(sides))
			runs := 0
			for b.Loop() {
				seed++
				blocks := benchBlocks(b, seed)
				for k := range sides {
					i := (k + runs) % len(sides)
					repoGC(b, targets)
					c0 := daemonsCPU(b, targets)
					start := time.Now()
					sides[i].send(blocks)
					took[i] += time.Since(start)
					cpu[i] += daemonsCPU(b, targets) - c0
				}
				runs++
			}
			mb := float64(benchTotal) * float64(runs) / 1e6
			b.ReportMetric(float64(took[0].Nanoseconds())/float64(runs), "ns/op")
			for i, side := range sides {
				b.ReportMetric(mb/took[i].Seconds(), side.name+"-MB/s")
				b.ReportMetric(cpu[i]/float64(runs), side.name+"-kubo-CPU-s")
				if i < 2 {
					b.ReportMetric(took[2].Seconds()/took[i].Seconds(), side.name+"-ratio")
				}
			}
		})
	}
}

// daemonsCPU returns the CPU seconds (user+system) the daemons used so
// far, from /proc/PID/stat (clock ticks of 1/100 s).
func daemonsCPU(b *testing.B, ds []*kubotest.Daemon) float64 {
	var sum float64
	for _, d := range ds {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.Pid()))
		if err != nil {
			b.Fatal(err)
		}
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		sum += (u + k) / 100
	}
	return sum
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
