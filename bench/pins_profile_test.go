package bench

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
	"github.com/ingestd/ingestd/restapi"
)

// BenchmarkPinsInProcess is BenchmarkPinsHTTP's work (--no-fsync) with the
// server in the benchmark's own process, a restapi.Server over a
// localstore on disk, so that each phase can be profiled with the client
// side in view and per-object allocations counted (BenchmarkPinsHTTP
// profiles the real daemon through --debug). The clients run in the same
// process; their frames (net/http's client, listPins) show in the profiles
// beside the server's (fasthttp, restapi, pinner, pebble).
//
//	INGESTD_BENCH_PINS=200000 INGESTD_BENCH_PROFILE_DIR=/tmp/pins go test -run '^$' -bench PinsInProcess -benchtime 1x ./bench
//
// With INGESTD_BENCH_PROFILE_DIR it writes <phase>.cpu.pprof for the writes,
// for each listing and, with INGESTD_BENCH_IDLE_SECONDS, for that long
// idle after them. For each listing it reports the bytes and
// allocations per object (MemStats deltas, client included) and the peak
// of HeapInuse sampled every 50 ms against HeapInuse before it: a listing
// that held the set would grow it with N.
func BenchmarkPinsInProcess(b *testing.B) {
	n := pinsBenchCount(b)
	clients := pinsBenchEnvInt(b, "INGESTD_BENCH_PIN_CLIENTS", 16)
	profDir := os.Getenv("INGESTD_BENCH_PROFILE_DIR")
	if profDir != "" {
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var want uint64
	for i := range uint64(n) {
		want += cidSum([]byte(pinCid(i).String()))
	}
	store, err := localstore.Open(b.TempDir(), localstore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	pool := ingest.NewHashPool(0)
	srv, err := restapi.New(restapi.Config{
		PeerID: "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw",
		Store:  store,
		Pins:   pinner.NewStore(store.Datastore(), pinner.StoreOptions{}),
		Pool:   pool,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(); pool.Stop(); store.Close() })
	d := &pinsDaemon{url: serve(b, srv), pid: os.Getpid()}
	tr := &http.Transport{MaxIdleConns: clients + 4, MaxIdleConnsPerHost: clients + 4, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}

	profile := func(phase string, f func()) {
		if profDir == "" {
			f()
			return
		}
		out, err := os.Create(filepath.Join(profDir, phase+".cpu.pprof"))
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		f()
		pprof.StopCPUProfile()
	}

	var w writeResult
	profile("writes", func() { w = writePins(b, d, client, 0, uint64(n), clients) })
	b.Logf("writes: %d pins with %d clients in %v: %.0f pins/s, p50 %v p99 %v; process CPU %.1f s; load %s",
		n, clients, w.elapsed.Round(time.Millisecond), w.rate, w.p50, w.p99, w.serverCPU.Seconds(), loadAvg())
	b.ReportMetric(w.rate, "pins/s")
	waitSettled(b, client, d.url)

	for _, l := range []struct{ name, path string }{
		{"allocations", "/allocations"},
		{"pins-local", "/pins?local=true"},
	} {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var peak uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		})
		var r listResult
		cpu0 := procCPU(d.pid)
		profile(l.name, func() { r, err = listPins(client, d.url+l.path, l.path != "/allocations") })
		cpu := procCPU(d.pid) - cpu0
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatalf("GET %s: %v", l.path, err)
		}
		if r.n != n || r.sum != want {
			b.Fatalf("GET %s: %d objects, digest %x; want %d, %x", l.path, r.n, r.sum, n, want)
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		perObj := func(v uint64) float64 { return float64(v) / float64(n) }
		b.Logf("GET %s: %d objects in %v (first byte %v), process CPU %.2f s = %.1f µs/object; %.0f B and %.1f allocs per object (client included); HeapInuse %s before, peak %s during",
			l.path, r.n, r.total.Round(time.Millisecond), r.ttfb.Round(time.Microsecond), cpu.Seconds(), 1e6*cpu.Seconds()/float64(n),
			perObj(after.TotalAlloc-before.TotalAlloc), perObj(after.Mallocs-before.Mallocs), pinsMiBU(before.HeapInuse), pinsMiBU(peak))
		b.ReportMetric(r.total.Seconds(), l.name+"-s")
		b.ReportMetric(1e6*cpu.Seconds()/float64(n), l.name+"-cpu-µs/obj")
		b.ReportMetric(perObj(after.Mallocs-before.Mallocs), l.name+"-allocs/obj")
		b.ReportMetric(float64(peak)/(1<<20), l.name+"-heap-peak-MiB")
	}
	if idle := time.Duration(pinsBenchEnvInt(b, "INGESTD_BENCH_IDLE_SECONDS", 0)) * time.Second; idle > 0 {
		cpu0 := procCPU(d.pid)
		profile("idle", func() { time.Sleep(idle) })
		used := procCPU(d.pid) - cpu0
		b.Logf("idle for %v with %d pins: %.2f CPU-s (%.1f%% of a core)", idle, n, used.Seconds(), 100*used.Seconds()/idle.Seconds())
		b.ReportMetric(100*used.Seconds()/idle.Seconds(), "idle-cpu-%")
	}
}

func pinsMiBU(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
