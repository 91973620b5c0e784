package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingestd/ingestd/internal/kubotest"
)

// BenchmarkPeersMemory adds one INGESTD_MEM_PEERS_MIB (default 4096) MiB
// file, generated as it is sent, to a fresh ingestd process with three
// kubo peers (pinned on all three) and reports the process's peak RSS
// (VmHWM); it fails over maxRSS (128 MiB).
//
//	go test -run '^$' -bench PeersMemory -benchtime 1x ./bench
//
// With INGESTD_BENCH_PROFILE_DIR the process runs with GODEBUG=gctrace=1
// (its stderr goes to gctrace.log there) and --debug, and each time its
// RSS reaches a new high (by 4 MiB) the heap profile is saved as
// heap-peak.pprof, so the profile shows what was live near the peak.
func BenchmarkPeersMemory(b *testing.B) {
	mib := 4096
	if v, err := strconv.Atoi(os.Getenv("INGESTD_MEM_PEERS_MIB")); err == nil && v > 0 {
		mib = v
	}
	var args []string
	for i := 0; i < 3; i++ {
		d := kubotest.StartDaemon(b, kubotest.NewRepo(b))
		args = append(args, "--peer", fmt.Sprintf("kubo%d=%s", i, d.URL()))
	}
	profDir := os.Getenv("INGESTD_BENCH_PROFILE_DIR")
	debugAddr := ""
	if profDir != "" {
		debugAddr = freeAddr(b)
		args = append(args, "--debug", debugAddr)
	}
	url, pid := startBinaryProfiled(b, profDir, debugAddr, args...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if profDir != "" {
		wg.Go(func() { sampleHeapAtPeak(b, pid, debugAddr, profDir, stop) })
	}
	size := int64(mib) << 20
	b.SetBytes(size)
	for b.Loop() {
		head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\nContent-Type: application/octet-stream\r\n\r\n"
		tail := "\r\n--" + boundary + "--\r\n"
		body := io.MultiReader(stringsReader(head), newGenReader(size), stringsReader(tail))
		req, _ := http.NewRequest("POST", url+"/add", body)
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" || !strings.Contains(string(out), `"name":"big"`) {
			b.Fatalf("add: %d %q %q", resp.StatusCode, out, resp.Trailer.Get("X-Stream-Error"))
		}
	}
	close(stop)
	wg.Wait()
	rss := peakRSS(b, pid)
	b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	if rss > maxRSS {
		b.Fatalf("peak RSS %d MiB is over the %d MiB budget", rss>>20, maxRSS>>20)
	}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// currentRSS reads the process's resident memory now (VmRSS), or 0.
func currentRSS(pid int) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// sampleHeapAtPeak polls pid's RSS every 100ms until stop is closed and
// saves the heap profile each time the RSS passes its high by 4 MiB.
func sampleHeapAtPeak(b *testing.B, pid int, debugAddr, dir string, stop chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var high int64
	for {
		select {
		case <-stop:
			b.Logf("heap profile saved at RSS %d MiB", high>>20)
			return
		case <-t.C:
		}
		rss := currentRSS(pid)
		if rss < high+4<<20 {
			continue
		}
		resp, err := http.Get("http://" + debugAddr + "/debug/pprof/heap")
		if err != nil {
			continue
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "heap-peak.pprof"), data, 0o644); err != nil {
			b.Error(err)
			return
		}
		high = rss
	}
}

// startBinaryProfiled is startBinary with extra flags; with a profDir the process runs
// with GODEBUG=gctrace=1 and its stderr is copied to profDir/gctrace.log.
// debugAddr (the --debug listener, also logged) is not taken for the API's.
func startBinaryProfiled(b *testing.B, profDir, debugAddr string, extra ...string) (string, int) {
	bin := filepath.Join(b.TempDir(), "ingestd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ingestd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	args := append([]string{"--data", b.TempDir(), "--listen", "127.0.0.1:0", "--gateway", "off"}, extra...)
	cmd := exec.Command(bin, args...)
	var logFile *os.File
	if profDir != "" {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
		f, err := os.Create(filepath.Join(profDir, "gctrace.log"))
		if err != nil {
			b.Fatal(err)
		}
		logFile = f
		b.Cleanup(func() { f.Close() })
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if logFile != nil {
				fmt.Fprintln(logFile, sc.Text())
			}
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil && m[1] != debugAddr {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-found:
		return "http://" + a, cmd.Process.Pid
	case <-time.After(60 * time.Second):
		b.Fatal("ingestd did not start")
	}
	return "", 0
}
