package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// The pinset at scale (cluster#1401: IPFS Cluster users run millions of
// pins): the real ingestd binary in the embedded mode, N pins written
// through POST /pins/{cid} by a fixed number of keep-alive clients, then
// GET /allocations, GET /pins?local=true and GET /pins each streamed three
// times, every object counted and checked. Peak RSS (VmHWM) is read after
// the writes and, reset before each listing group through
// /proc/<pid>/clear_refs, after each group: a listing that loaded the set
// would show as a peak that grows with N.
//
//	INGESTD_BENCH_PINS=10000 go test -run '^$' -bench PinsHTTP -benchtime 1x -v -timeout 20m ./bench
//
// (-v: without it go test keeps only the first lines of a benchmark's
// log.) The figures and the 1,000,000-pin command are in BENCHMARKS.md.
// INGESTD_BENCH_PINS (default 1,000,000), INGESTD_BENCH_PIN_CLIENTS
// (default 16) and INGESTD_BENCH_IDLE_SECONDS (default 0: after the
// listings, how long to watch the idle daemon's CPU, to see the cost of its
// periodic scans of the pinset) change the run. With
// INGESTD_BENCH_PROFILE_DIR the daemon serves pprof (--debug) and the
// benchmark saves there, per sub-benchmark: a CPU profile of the first 10 s
// of the writes, heap profiles after the writes and after the listings, a
// 10 s CPU profile of a fourth, untimed run of each listing, and a CPU
// profile of the idle time. Sub-benchmarks: "fsync" (the default
// durability; select it alone with 'PinsHTTP/^fsync$') and "no-fsync"
// (--no-fsync). Every POST /pins syncs pebble's WAL in both since b9bf755;
// before, --no-fsync skipped that sync.

// pinsBenchCount is the number of pins; INGESTD_BENCH_PINS overrides it.
func pinsBenchCount(b *testing.B) int {
	v := os.Getenv("INGESTD_BENCH_PINS")
	if v == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		b.Fatalf("INGESTD_BENCH_PINS=%q: want a number of pins >= 100", v)
	}
	return n
}

// pinsBenchEnvInt reads a positive integer setting, or def.
func pinsBenchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a non-negative number", name, v)
	}
	return n
}

// pinsVerified is how many pins are written and checked one by one before
// the timed writes: GET /pins/{cid} must report them pinned.
const pinsVerified = 8

// pinCid is pin i of the benchmark: a CIDv1 raw whose identity multihash
// inlines i as 8 big-endian bytes. The block is the CID itself, so the
// embedded store holds it by definition and the tracker marks the pin
// pinned without fetching anything.
func pinCid(i uint64) cid.Cid {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], i)
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum(buf[:])
	if err != nil {
		panic(err) // identity hashing of 8 bytes cannot fail
	}
	return c
}

// cidSum is an order-independent digest of a set of CID strings: the sum of
// their FNV-1a hashes. With the count, it tells a listing of exactly the
// written pins from one with a pin missing, repeated or foreign, without
// keeping a million strings in the client.
func cidSum(s []byte) uint64 {
	h := uint64(14695981039346656037) // FNV-1a, 64 bits
	for _, c := range s {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// BenchmarkPinsHTTP: see the comment at the top of this file.
func BenchmarkPinsHTTP(b *testing.B) {
	n := pinsBenchCount(b)
	clients := pinsBenchEnvInt(b, "INGESTD_BENCH_PIN_CLIENTS", 16)
	idle := time.Duration(pinsBenchEnvInt(b, "INGESTD_BENCH_IDLE_SECONDS", 0)) * time.Second
	if clients < 1 {
		b.Fatal("INGESTD_BENCH_PIN_CLIENTS must be at least 1")
	}
	bin := buildIngestdBinary(b)
	var want uint64
	for i := range uint64(n) {
		want += cidSum([]byte(pinCid(i).String()))
	}
	for _, c := range []struct {
		name    string
		noFsync bool
	}{{"fsync", false}, {"no-fsync", true}} {
		// Start with the disk idle: the previous case's pebble files may
		// still be written back.
		syscall.Sync()
		b.Run(c.name, func(b *testing.B) {
			runPinset(b, bin, c.noFsync, n, clients, want, idle)
		})
	}
}

// runPinset is one durability setting: a fresh daemon, the writes, the
// listings, the figures.
func runPinset(b *testing.B, bin string, noFsync bool, n, clients int, want uint64, idle time.Duration) {
	profDir := os.Getenv("INGESTD_BENCH_PROFILE_DIR")
	if profDir != "" {
		profDir = filepath.Join(profDir, b.Name()[strings.LastIndexByte(b.Name(), '/')+1:])
		if err := os.MkdirAll(profDir, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	p := startPinsDaemon(b, bin, noFsync, profDir != "")
	b.Logf("ingestd pid %d on %s, data in %s, load %s", p.pid, p.url, p.data, loadAvg())
	tr := &http.Transport{MaxIdleConns: clients + 4, MaxIdleConnsPerHost: clients + 4, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	peerID := daemonPeerID(b, client, p.url)

	// A handful first, one at a time: each must be reported pinned for
	// the peer, or the listings below would count pins in another state.
	for i := range uint64(pinsVerified) {
		if err := postPin(client, p.url, pinCid(i).String()); err != nil {
			b.Fatal(err)
		}
		waitPinned(b, client, p.url, pinCid(i), peerID)
	}

	var profWG sync.WaitGroup
	if profDir != "" {
		profWG.Go(func() { p.saveProfile(b, client, profDir, "profile?seconds=10", "writes.cpu.pprof") })
	}
	b.ResetTimer()
	w := writePins(b, p, client, pinsVerified, uint64(n), clients)
	profWG.Wait()
	rssWrites := p.status(b, "VmHWM:")
	b.Logf("writes: %d pins (after %d verified) with %d clients in %v: %.0f pins/s; latency p50 %v p99 %v max %v; ingestd CPU %.1f s, client CPU %.1f s; VmRSS %s, VmHWM %s; load %s",
		n-pinsVerified, pinsVerified, clients, w.elapsed.Round(time.Millisecond), w.rate, w.p50, w.p99, w.max,
		w.serverCPU.Seconds(), w.clientCPU.Seconds(), pinsMiB(p.status(b, "VmRSS:")), pinsMiB(rssWrites), loadAvg())
	for _, s := range w.progress {
		b.Log("  " + s)
	}
	b.ReportMetric(w.rate, "pins/s")
	b.ReportMetric(float64(clients), "clients")
	b.ReportMetric(pinsMs(w.p50), "post-p50-ms")
	b.ReportMetric(pinsMs(w.p99), "post-p99-ms")
	b.ReportMetric(float64(rssWrites)/(1<<20), "rss-writes-MiB")

	waitSettled(b, client, p.url)
	p.saveProfile(b, client, profDir, "heap", "after-writes.heap.pprof")

	peak := rssWrites
	for _, l := range []struct{ name, path string }{
		{"allocations", "/allocations"},
		{"pins-local", "/pins?local=true"},
		{"pins", "/pins"},
	} {
		waited := waitIdle(p.pid, 60*time.Second)
		before := p.status(b, "VmRSS:")
		reset := p.resetPeak()
		var ttfbs, totals []time.Duration
		for rep := 1; rep <= 3; rep++ {
			cpu0, self0 := procCPU(p.pid), selfCPU()
			r, err := listPins(client, p.url+l.path, l.path != "/allocations")
			if err != nil {
				b.Fatalf("GET %s (run %d): %v", l.path, rep, err)
			}
			if r.n != n || r.sum != want {
				b.Fatalf("GET %s (run %d): %d objects, digest %x; want %d pins, digest %x", l.path, rep, r.n, r.sum, n, want)
			}
			ttfbs, totals = append(ttfbs, r.ttfb), append(totals, r.total)
			b.Logf("GET %s run %d: %d objects, %.1f MiB, first byte %v, total %v (%.0f objects/s); ingestd CPU %.2f s, client CPU %.2f s; load %s",
				l.path, rep, r.n, float64(r.bytes)/(1<<20), r.ttfb.Round(time.Microsecond), r.total.Round(time.Millisecond),
				float64(r.n)/r.total.Seconds(), (procCPU(p.pid) - cpu0).Seconds(), (selfCPU() - self0).Seconds(), loadAvg())
		}
		hwm := p.status(b, "VmHWM:")
		peak = max(peak, hwm)
		if profDir != "" {
			// A fourth run, untimed, with 10 s of it profiled.
			var wg sync.WaitGroup
			wg.Go(func() { p.saveProfile(b, client, profDir, "profile?seconds=10", l.name+".cpu.pprof") })
			if _, err := listPins(client, p.url+l.path, l.path != "/allocations"); err != nil {
				b.Fatalf("GET %s (profiled run): %v", l.path, err)
			}
			wg.Wait()
		}
		what := "peak during the 3 runs"
		if !reset {
			what = "process peak so far (clear_refs refused)"
		}
		b.Logf("GET %s: VmRSS before %s, %s %s (waited %v for the daemon to go idle first)", l.path, pinsMiB(before), what, pinsMiB(hwm), waited.Round(100*time.Millisecond))
		b.ReportMetric(pinsMs(pinsMedian(ttfbs)), l.name+"-ttfb-ms")
		b.ReportMetric(pinsMedian(totals).Seconds(), l.name+"-s")
		b.ReportMetric(float64(hwm)/(1<<20), l.name+"-peak-MiB")
	}
	b.ReportMetric(float64(peak)/(1<<20), "rss-peak-MiB")
	p.saveProfile(b, client, profDir, "heap", "after-listings.heap.pprof")

	if idle > 0 {
		cpu0 := procCPU(p.pid)
		if profDir != "" {
			p.saveProfile(b, client, profDir, fmt.Sprintf("profile?seconds=%d", int(idle.Seconds())), "idle.cpu.pprof")
		} else {
			time.Sleep(idle)
		}
		used := procCPU(p.pid) - cpu0
		b.Logf("idle for %v with %d pins: ingestd used %.2f CPU-s (%.1f%% of a core); load %s", idle, n, used.Seconds(), 100*used.Seconds()/idle.Seconds(), loadAvg())
		b.ReportMetric(100*used.Seconds()/idle.Seconds(), "idle-cpu-%")
	}
	if lines := p.logLines(); len(lines) > 1 {
		b.Logf("ingestd log (%d lines, last 20):\n%s", len(lines), strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
}

// buildIngestdBinary builds cmd/ingestd from the working tree and logs
// which tree that was: other work on the daemon would change the figures.
func buildIngestdBinary(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "ingestd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ingestd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	head, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	dirty, _ := exec.Command("git", "status", "--porcelain", "--", "../cmd", "../pinner", "../restapi", "../localstore", "../go.mod").Output()
	b.Logf("built ingestd at %s; uncommitted changes under cmd, pinner, restapi, localstore: %q", bytes.TrimSpace(head), bytes.TrimSpace(dirty))
	for _, v := range []string{"GOGC", "GOMEMLIMIT", "GOMAXPROCS"} {
		if s := os.Getenv(v); s != "" {
			b.Logf("%s=%s is set for the daemon too", v, s)
		}
	}
	return bin
}

// pinsDaemon is one running ingestd process.
type pinsDaemon struct {
	url, data string
	pid       int
	pprof     string // --debug URL, if any

	mu  sync.Mutex
	log []string // its stderr
}

// tmpfsMagic is statfs's f_type of tmpfs.
const tmpfsMagic = 0x01021994

// Where the daemon says it listens.
var (
	apiListenRe   = regexp.MustCompile(`REST API on http://(127\.0\.0\.1:\d+)`)
	pprofListenRe = regexp.MustCompile(`serving pprof on http://(127\.0\.0\.1:\d+)`)
)

// startPinsDaemon runs bin in the embedded mode on a fresh data directory
// and a port the kernel picks on 127.0.0.1, without the gateway; with
// pprof, it also serves pprof (--debug) on another such port. INGESTD_* variables of the
// benchmark's environment are not passed on, so that only the flags set
// the daemon's durability.
func startPinsDaemon(b *testing.B, bin string, noFsync, pprof bool) *pinsDaemon {
	data := filepath.Join(b.TempDir(), "data")
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(data), &st); err != nil {
		b.Fatal(err)
	}
	if st.Type == tmpfsMagic {
		b.Fatalf("%s is on tmpfs: set TMPDIR to a directory on a disk", filepath.Dir(data))
	}
	// No gateway: it would take 127.0.0.1:8080, which another daemon on
	// the machine may hold, and it is not what is measured.
	args := []string{"--data", data, "--listen", "127.0.0.1:0", "--gateway", "off"}
	if noFsync {
		args = append(args, "--no-fsync")
	}
	if pprof {
		args = append(args, "--debug", "127.0.0.1:0")
	}
	cmd := exec.Command(bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "INGESTD_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	b.Cleanup(func() {
		// Gracefully, so that the data directory can be removed after.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	d := &pinsDaemon{data: data, pid: cmd.Process.Pid}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.log = append(d.log, line)
			if m := pprofListenRe.FindStringSubmatch(line); m != nil {
				d.pprof = "http://" + m[1]
			}
			d.mu.Unlock()
			if m := apiListenRe.FindStringSubmatch(line); m != nil {
				found <- m[1]
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case a := <-found:
		d.url = "http://" + a
	case <-exited:
		b.Fatalf("ingestd exited at start:\n%s", strings.Join(d.logLines(), "\n"))
	case <-time.After(30 * time.Second):
		b.Fatal("ingestd did not start")
	}
	// The daemon logs the pprof address after the API's.
	for deadline := time.Now().Add(10 * time.Second); pprof; time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		ok := d.pprof != ""
		d.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("ingestd serves no pprof:\n%s", strings.Join(d.logLines(), "\n"))
		}
	}
	return d
}

// saveProfile fetches /debug/pprof/<what> into dir/file; nothing without
// a dir.
func (d *pinsDaemon) saveProfile(b *testing.B, client *http.Client, dir, what, file string) {
	if dir == "" {
		return
	}
	d.mu.Lock()
	base := d.pprof
	d.mu.Unlock()
	resp, err := client.Get(base + "/debug/pprof/" + what)
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Errorf("pprof %s: status %d, %v", what, resp.StatusCode, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		b.Error(err)
	}
}

func (d *pinsDaemon) logLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log)
}

// status returns a size field of /proc/<pid>/status ("VmRSS:", "VmHWM:")
// in bytes.
func (d *pinsDaemon) status(b *testing.B, key string) int64 {
	n, err := procStatus(d.pid, key)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func procStatus(pid int, key string) (int64, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cannot parse %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// resetPeak sets the process's VmHWM back to its current RSS (Linux
// clear_refs, value 5), so that the next VmHWM is the peak of what runs in
// between. It reports whether the kernel accepted it.
func (d *pinsDaemon) resetPeak() bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", d.pid), []byte("5"), 0) == nil
}

// procCPU is the user plus system CPU time pid has used (0 if unreadable).
func procCPU(pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 13 {
		return 0
	}
	// Fields 14 and 15 of stat(5), utime and stime, in clock ticks (100 Hz
	// on Linux).
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stime) * 10 * time.Millisecond
}

// selfCPU is the CPU time of the benchmark process: the clients.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAvg is the machine's 1, 5 and 15 minute load.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// waitIdle waits, up to limit, for a second in which pid uses less than 5%
// of a core: compactions after the writes, or a periodic scan, should not
// run into the next measurement. It returns how long it waited.
func waitIdle(pid int, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		c0 := procCPU(pid)
		time.Sleep(time.Second)
		if procCPU(pid)-c0 < 50*time.Millisecond {
			break
		}
	}
	return time.Since(start)
}

func pinsMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func pinsMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pinsMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// daemonPeerID reads the daemon's peer ID from GET /id.
func daemonPeerID(b *testing.B, client *http.Client, url string) string {
	resp, err := client.Get(url + "/id")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var id struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil || resp.StatusCode != http.StatusOK || id.ID == "" {
		b.Fatalf("GET /id: status %d, %v, id %q", resp.StatusCode, err, id.ID)
	}
	return id.ID
}

// postPin pins c (its string form) with POST /pins/{cid}: 200 and the pin
// of c in the body, or an error.
func postPin(client *http.Client, url, c string) error {
	resp, err := client.Post(url+"/pins/"+c, "", nil)
	if err != nil {
		return fmt.Errorf("POST /pins/%s: %w", c, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("POST /pins/%s: reading the answer: %w", c, err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"cid":"`+c+`"`)) {
		return fmt.Errorf("POST /pins/%s: status %d, body %.300q", c, resp.StatusCode, body)
	}
	return nil
}

// waitPinned polls GET /pins/{cid} until peer reports c pinned.
func waitPinned(b *testing.B, client *http.Client, url string, c cid.Cid, peer string) {
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(url + "/pins/" + c.String())
		if err != nil {
			b.Fatal(err)
		}
		var g struct {
			Cid     string `json:"cid"`
			PeerMap map[string]struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			} `json:"peer_map"`
		}
		err = json.NewDecoder(resp.Body).Decode(&g)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || g.Cid != c.String() {
			b.Fatalf("GET /pins/%s: status %d, %v, cid %q", c, resp.StatusCode, err, g.Cid)
		}
		pi := g.PeerMap[peer]
		if pi.Status == "pinned" {
			return
		}
		last = pi.Status + " " + pi.Error
	}
	b.Fatalf("GET /pins/%s: not pinned on %s after 10s: %s", c, peer, last)
}

// writeResult is what writePins measured.
type writeResult struct {
	elapsed              time.Duration
	rate                 float64 // pins per second
	p50, p99, max        time.Duration
	serverCPU, clientCPU time.Duration
	progress             []string // one line per tenth of the pins
}

// writePins posts pins [from, to) with the given number of concurrent
// keep-alive clients, each taking the next pin when its previous one is
// answered. It stops at the first error and fails.
func writePins(b *testing.B, d *pinsDaemon, client *http.Client, from, to uint64, clients int) writeResult {
	var next, done atomic.Uint64
	next.Store(from)
	var failed atomic.Bool
	var errMu sync.Mutex
	var firstErr error
	lats := make([][]time.Duration, clients)
	cpu0, self0 := procCPU(d.pid), selfCPU()
	start := time.Now()

	stop := make(chan struct{})
	var res writeResult
	var progWG sync.WaitGroup
	progWG.Go(func() {
		total := to - from
		step, mark := max(total/10, 1), max(total/10, 1)
		lastT, lastN := start, uint64(0)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := done.Load()
			if n < mark {
				continue
			}
			now := time.Now()
			rss, _ := procStatus(d.pid, "VmRSS:")
			line := fmt.Sprintf("%3d%%: %d pins in %v, %.0f pins/s over the last tenth, ingestd VmRSS %s, CPU %.1f s, load %s",
				100*n/total, n, now.Sub(start).Round(time.Second), float64(n-lastN)/now.Sub(lastT).Seconds(),
				pinsMiB(rss), (procCPU(d.pid) - cpu0).Seconds(), loadAvg())
			res.progress = append(res.progress, line)
			fmt.Fprintln(os.Stderr, "pins:", line)
			lastT, lastN = now, n
			for mark <= n {
				mark += step
			}
		}
	})

	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, (to-from)/uint64(clients)+1)
			defer func() { lats[w] = lat }()
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= to {
					return
				}
				t := time.Now()
				if err := postPin(client, d.url, pinCid(i).String()); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					failed.Store(true)
					return
				}
				lat = append(lat, time.Since(t))
				done.Add(1)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.serverCPU, res.clientCPU = procCPU(d.pid)-cpu0, selfCPU()-self0
	close(stop)
	progWG.Wait()
	if firstErr != nil {
		b.Fatalf("after %d pins: %v", done.Load(), firstErr)
	}
	all := slices.Concat(lats...)
	if uint64(len(all)) != to-from {
		b.Fatalf("%d pins answered, want %d", len(all), to-from)
	}
	slices.Sort(all)
	res.rate = float64(len(all)) / res.elapsed.Seconds()
	res.p50, res.p99, res.max = all[len(all)/2], all[len(all)*99/100], all[len(all)-1]
	return res
}

// waitSettled waits until no pin is queued or pinning on the tracker, and
// fails if any is in an error state: the listings then see every pin
// pinned.
func waitSettled(b *testing.B, client *http.Client, url string) {
	const busy = "pin_queued,pinning"
	const bad = "pin_error,unpin_error,cluster_error,unexpectedly_unpinned"
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Second) {
		resp, err := client.Get(url + "/pins?local=true&filter=" + busy + "," + bad)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		switch {
		case resp.StatusCode == http.StatusNoContent:
			return
		case resp.StatusCode != http.StatusOK:
			b.Fatalf("GET /pins?filter=…: status %d, %.300q", resp.StatusCode, body)
		}
		for _, s := range strings.Split(bad, ",") {
			if bytes.Contains(body, []byte(`"status":"`+s+`"`)) {
				b.Fatalf("pins in %s after the writes: %.500q", s, body)
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("pins still queued 5 minutes after the writes: %d objects", bytes.Count(body, []byte("\n")))
		}
	}
}

// listResult is one streamed listing as the client saw it.
type listResult struct {
	n           int    // objects
	sum         uint64 // cidSum over their CIDs
	bytes       int64
	ttfb, total time.Duration
}

var (
	cidKey      = []byte(`"cid":"`)
	statusKey   = []byte(`"status":"`)
	pinnedValue = []byte(`"status":"pinned"`)
)

// listPins GETs a streamed NDJSON listing and checks every object as it
// arrives: one object per line, with a CID, and with statuses (the /pins
// listings) pinned on every peer. ttfb is from sending the request to the
// first byte of the body; total to the end of the stream.
func listPins(client *http.Client, url string, statuses bool) (listResult, error) {
	var r listResult
	start := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return r, fmt.Errorf("status %d: %q", resp.StatusCode, body)
	}
	br := bufio.NewReaderSize(resp.Body, 1<<20)
	if _, err := br.Peek(1); err != nil {
		return r, fmt.Errorf("no body: %w", err)
	}
	r.ttfb = time.Since(start)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			break
		}
		if err != nil {
			return r, fmt.Errorf("after %d objects: %w", r.n, err)
		}
		r.bytes += int64(len(line))
		i := bytes.Index(line, cidKey)
		if line[0] != '{' || i < 0 {
			return r, fmt.Errorf("object %d is not a pin: %.300q", r.n, line)
		}
		c := line[i+len(cidKey):]
		j := bytes.IndexByte(c, '"')
		if j < 0 {
			return r, fmt.Errorf("object %d: unterminated cid: %.300q", r.n, line)
		}
		r.sum += cidSum(c[:j])
		if statuses {
			if k := bytes.Count(line, statusKey); k == 0 || k != bytes.Count(line, pinnedValue) {
				return r, fmt.Errorf("object %d is not pinned on every peer: %.500q", r.n, line)
			}
		}
		r.n++
	}
	r.total = time.Since(start)
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return r, fmt.Errorf("X-Stream-Error after %d objects: %s", r.n, e)
	}
	return r, nil
}
