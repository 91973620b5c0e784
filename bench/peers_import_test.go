package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/ingest/unixfs"
	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

// profileDAG builds the input's DAG as /add builds it with query ("" for
// the defaults, or "profile=unixfs-v1-2025") and writes it to a CARv1
// file whose header names the root, as a client would prepare it for
// dag/import. It returns the root and the CAR's path.
func profileDAG(b *testing.B, input, profile string) (cid.Cid, string) {
	f, err := os.Open(input)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	o := unixfs.DefaultOptions()
	if profile != "" {
		if err := o.ApplyProfile(profile); err != nil {
			b.Fatal(err)
		}
	}
	if err := o.Resolve(); err != nil {
		b.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	defer pool.Stop()
	s := &collectSink{}
	roots, err := unixfs.Import(context.Background(), &fileEntries{f: f}, &o, pool, s, func(unixfs.Output) error { return nil })
	if err != nil || len(roots) == 0 {
		b.Fatalf("cannot build DAG: %v", err)
	}
	root := roots[len(roots)-1]
	path := filepath.Join(b.TempDir(), "dag.car")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	// {"roots":[root],"version":1} in DAG-CBOR: a CID is tag 42 over its
	// bytes behind a 0x00 prefix.
	rb := root.Bytes()
	var hdr []byte
	hdr = append(hdr, 0xa2, 0x65, 'r', 'o', 'o', 't', 's', 0x81, 0xd8, 0x2a, 0x58, byte(len(rb)+1), 0x00)
	hdr = append(hdr, rb...)
	hdr = append(hdr, 0x67, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x01)
	w.Write(binary.AppendUvarint(nil, uint64(len(hdr))))
	w.Write(hdr)
	seen := map[string]bool{}
	for _, blk := range s.blocks {
		if seen[blk.c.KeyString()] {
			continue
		}
		seen[blk.c.KeyString()] = true
		w.Write(binary.AppendUvarint(nil, uint64(len(blk.c.Bytes())+len(blk.data))))
		w.Write(blk.c.Bytes())
		w.Write(blk.data)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	out.Close()
	return root, path
}

// dagImport posts the CAR at path to d's dag/import (pin-roots default:
// true) by sendfile, and checks that kubo pinned root.
func dagImport(d *kubotest.Daemon, path string, root cid.Cid) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dag.car\"\r\nContent-Type: application/octet-stream\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	resp, err := sendfilePost(d.URL()+"/api/v0/dag/import?stats=true", f, head, tail)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" {
		return fmt.Errorf("dag/import: %d %s %s", resp.StatusCode, body, resp.Trailer.Get("X-Stream-Error"))
	}
	var pinned bool
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		var out struct {
			Root *struct {
				Cid struct {
					Slash string `json:"/"`
				}
				PinErrorMsg string
			}
		}
		if err := json.Unmarshal([]byte(line), &out); err != nil {
			return fmt.Errorf("dag/import answer %q: %w", line, err)
		}
		if out.Root != nil {
			if out.Root.PinErrorMsg != "" || out.Root.Cid.Slash != root.String() {
				return fmt.Errorf("dag/import: root %s: %s", out.Root.Cid.Slash, out.Root.PinErrorMsg)
			}
			pinned = true
		}
	}
	if !pinned {
		return fmt.Errorf("dag/import did not pin %s: %s", root, body)
	}
	return nil
}

// cpuSeconds returns the user+system CPU time of process pid so far
// (/proc/pid/stat, clock ticks of 1/100 s).
func cpuSeconds(b *testing.B, pid int) float64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(st)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100
}

func kuboCPU(b *testing.B, ds []*kubotest.Daemon) float64 {
	var sum float64
	for _, d := range ds {
		sum += cpuSeconds(b, d.Pid())
	}
	return sum
}

// BenchmarkPeersImport compares, in one run and on the same kubo daemons,
// an ingestd add (pinned, /add with the profile's options) to 1 and to 3
// peers with kubo's own ceiling: the same DAG, pre-built as one CAR,
// posted to each daemon's dag/import (which stores and pins it) at once.
// Both sides alternate which goes first; before each, the root is unpinned
// and repo/gc empties the daemons (untimed), so every block is stored
// again. It reports both rates, ingestd/import (the target: >= 0.80 with
// one peer, >= 0.90 with three) and the daemons' CPU seconds per side.
//
//	INGESTD_BENCH_MIB=512 go test -run '^$' -bench PeersImport -benchtime 3x ./bench
func BenchmarkPeersImport(b *testing.B) {
	size := benchSize()
	input := writeInput(b, size)
	ds := make([]*kubotest.Daemon, 3)
	for i := range ds {
		ds[i] = kubotest.StartDaemon(b, kubotest.NewRepo(b))
	}
	profiles := []struct{ name, profile string }{{"default", ""}, {"unixfs-v1-2025", unixfs.ProfileV1}}
	type dag struct {
		root cid.Cid
		car  string
	}
	dags := make([]dag, len(profiles))
	for i, p := range profiles {
		dags[i].root, dags[i].car = profileDAG(b, input, p.profile)
	}
	// Warm up, untimed: kubo's flatfs creates its shard directories on
	// first use, which would slow whichever side goes first.
	for _, d := range ds {
		if err := dagImport(d, dags[0].car, dags[0].root); err != nil {
			b.Fatal(err)
		}
	}
	gc := func(targets []*kubotest.Daemon) {
		for _, d := range targets {
			for _, g := range dags {
				_, _ = d.CallErr(context.Background(), "pin/rm", map[string][]string{"arg": {g.root.String()}})
			}
			d.Call(b, "repo/gc", nil)
		}
	}
	for _, n := range []int{1, 3} {
		targets := ds[:n]
		var pcs []blockfanout.PeerConfig
		for i, d := range targets {
			pcs = append(pcs, blockfanout.PeerConfig{Name: fmt.Sprint("kubo", i), URL: d.URL()})
		}
		f, err := blockfanout.New(blockfanout.Config{Peers: pcs, BlockPut: os.Getenv("INGESTD_BENCH_BLOCKPUT") != ""})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		store, _ := localstore.Open(b.TempDir(), localstore.Options{})
		pool := ingest.NewHashPool(0)
		srv, err := restapi.New(restapi.Config{PeerID: "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw", Store: store, Pins: pinner.NewStore(store.Datastore(), pinner.StoreOptions{}), Pool: pool, Fanout: f})
		if err != nil {
			b.Fatal(err)
		}
		url := serve(b, srv)
		for pi, p := range profiles {
			g := dags[pi]
			b.Run(fmt.Sprintf("%dpeers/%s", n, p.name), func(b *testing.B) {
				var tImport, tAdd time.Duration
				var cpuImport, cpuAdd float64
				importAll := func() {
					var wg sync.WaitGroup
					errs := make([]error, n)
					for i, d := range targets {
						wg.Go(func() { errs[i] = dagImport(d, g.car, g.root) })
					}
					wg.Wait()
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
				add := func() {
					q := ""
					if p.profile != "" {
						q = "?profile=" + p.profile
					}
					last := post(b, url+"/add"+q, input)
					if last["cid"] != g.root.String() {
						b.Fatalf("root %v, want %s", last["cid"], g.root)
					}
				}
				timed := func(send func(), t *time.Duration, cpu *float64) {
					gc(targets)
					c0 := kuboCPU(b, targets)
					start := time.Now()
					send()
					*t += time.Since(start)
					*cpu += kuboCPU(b, targets) - c0
				}
				runs := 0
				for b.Loop() {
					if runs%2 == 0 {
						timed(add, &tAdd, &cpuAdd)
						timed(importAll, &tImport, &cpuImport)
					} else {
						timed(importAll, &tImport, &cpuImport)
						timed(add, &tAdd, &cpuAdd)
					}
					runs++
				}
				mb := float64(size) * float64(runs) / 1e6
				b.ReportMetric(float64(tAdd.Nanoseconds())/float64(runs), "ns/op")
				b.ReportMetric(mb/tAdd.Seconds(), "ingestd-MB/s")
				b.ReportMetric(mb/tImport.Seconds(), "dag-import-MB/s")
				b.ReportMetric(tImport.Seconds()/tAdd.Seconds(), "ratio")
				b.ReportMetric(cpuAdd/float64(runs), "kubo-CPU-s-ingestd")
				b.ReportMetric(cpuImport/float64(runs), "kubo-CPU-s-import")
			})
		}
		srv.Shutdown()
		f.Stop()
		pool.Stop()
		store.Close()
	}
}
