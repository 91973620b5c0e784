package bench

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// genReader produces n bytes of distinct, incompressible-looking data
// cheaply: a 4 MiB random buffer whose first 8 bytes of every 256 KiB (the
// default chunk) are overwritten with a counter, so no two chunks are
// equal and the client spends its time copying, not generating.
type genReader struct {
	buf  []byte
	left int64
	off  int
	ctr  uint64
}

func newGenReader(n int64) *genReader {
	buf := make([]byte, 4<<20)
	r := rand.New(rand.NewPCG(11, 13))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	return &genReader{buf: buf, left: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if g.off == len(g.buf) {
		g.off = 0
	}
	if g.off%(256<<10) == 0 {
		g.ctr++
		for j := 0; j < 8; j++ {
			g.buf[g.off+j] = byte(g.ctr >> (8 * j))
		}
	}
	end := g.off + len(p)
	if next := (g.off/(256<<10) + 1) * (256 << 10); end > next {
		end = next
	}
	if int64(end-g.off) > g.left {
		end = g.off + int(g.left)
	}
	n := copy(p, g.buf[g.off:end])
	g.off += n
	g.left -= int64(n)
	return n, nil
}

var listenRe = regexp.MustCompile(`on http://(127\.0\.0\.1:\d+)`)

// startBinary builds and runs the real ingestd and returns its URL and PID.
func startBinary(b *testing.B) (string, int) {
	bin := filepath.Join(b.TempDir(), "ingestd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ingestd").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--data", b.TempDir(), "--listen", "127.0.0.1:0", "--gateway", "off")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]: // the first address logged is the API's
				default:
				}
			}
		}
	}()
	select {
	case a := <-found:
		return "http://" + a, cmd.Process.Pid
	case <-time.After(30 * time.Second):
		b.Fatal("ingestd did not start")
	}
	return "", 0
}

// peakRSS reads the process's high-water mark of resident memory.
func peakRSS(b *testing.B, pid int) int64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// BenchmarkAddMemory uploads one file of each size to a fresh ingestd
// process and reports the process's peak RSS: it must not grow with the
// upload. Sizes in MiB from INGESTD_MEM_SIZES_MIB (default "256,2048"),
// e.g. INGESTD_MEM_SIZES_MIB=1024,10240 for the 1 GiB / 10 GiB figures.
func BenchmarkAddMemory(b *testing.B) {
	sizes := os.Getenv("INGESTD_MEM_SIZES_MIB")
	if sizes == "" {
		sizes = "256,2048"
	}
	for _, s := range strings.Split(sizes, ",") {
		mib, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{"", "only-hash=true"} {
			name := fmt.Sprintf("%dMiB/store", mib)
			if q != "" {
				name = fmt.Sprintf("%dMiB/only-hash", mib)
			}
			b.Run(name, func(b *testing.B) {
				url, pid := startBinary(b)
				size := int64(mib) << 20
				b.SetBytes(size)
				for b.Loop() {
					head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\nContent-Type: application/octet-stream\r\n\r\n"
					tail := "\r\n--" + boundary + "--\r\n"
					body := io.MultiReader(stringsReader(head), newGenReader(size), stringsReader(tail))
					req, _ := http.NewRequest("POST", url+"/add?"+q, body)
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
				rss := peakRSS(b, pid)
				b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
				if rss > maxRSS {
					b.Fatalf("peak RSS %d MiB is over the %d MiB budget", rss>>20, maxRSS>>20)
				}
			})
		}
	}
}

// maxRSS is the memory budget of one ingestd process, whatever it adds
// (issue 10): adds stream, so memory must not grow with their size or
// number beyond the admission limit.
const maxRSS = 128 << 20

// BenchmarkConcurrentAddMemory runs INGESTD_MEM_CONCURRENT (default 16)
// adds of distinct INGESTD_MEM_CONCURRENT_MIB (default 256) MiB files at
// once against a fresh ingestd and fails if its peak RSS goes over
// maxRSS.
func BenchmarkConcurrentAddMemory(b *testing.B) {
	n, mib := 16, 256
	if v, _ := strconv.Atoi(os.Getenv("INGESTD_MEM_CONCURRENT")); v > 0 {
		n = v
	}
	if v, _ := strconv.Atoi(os.Getenv("INGESTD_MEM_CONCURRENT_MIB")); v > 0 {
		mib = v
	}
	url, pid := startBinary(b)
	size := int64(mib) << 20
	b.SetBytes(size * int64(n))
	round := uint64(0)
	for b.Loop() {
		errs := make(chan error, n)
		for i := range n {
			round++
			seed := round
			go func() {
				g := newGenReader(size)
				g.ctr = seed << 32 // distinct content per add: nothing deduplicated
				head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n"
				tail := "\r\n--" + boundary + "--\r\n"
				req, _ := http.NewRequest("POST", url+"/add", io.MultiReader(stringsReader(head), g, stringsReader(tail)))
				req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Trailer.Get("X-Stream-Error") != "" || !strings.Contains(string(out), `"name":"f"`) {
					errs <- fmt.Errorf("add %d: %d %q %q", i, resp.StatusCode, out, resp.Trailer.Get("X-Stream-Error"))
					return
				}
				errs <- nil
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	rss := peakRSS(b, pid)
	b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
	if rss > maxRSS {
		b.Fatalf("peak RSS %d MiB with %d adds of %d MiB at once is over the %d MiB budget", rss>>20, n, mib, maxRSS>>20)
	}
}
