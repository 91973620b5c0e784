package restapi

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ingestd/ingestd/internal/kubotest"
	"github.com/ingestd/ingestd/metrics"
)

// scrape reads GET /metrics and returns the value of each unlabelled
// sample.
func scrape(t *testing.T, ts *testServer) map[string]float64 {
	t.Helper()
	resp, err := http.Get(ts.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && !strings.HasPrefix(l, "#") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// TestMetrics: the counters move with what a user did: the bytes of an
// add are the DAG size kubo reports for the same file, a rejected CAR and
// a pin in error show, and the Go runtime is there.
func TestMetrics(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Metrics = metrics.New() })
	data := randBytes(3<<20+17, 9)
	repo := kubotest.NewRepo(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), data, 0o644)
	root := strings.TrimSpace(string(repo.Run(t, nil, "add", "-Q", filepath.Join(dir, "f"))))
	var stat struct {
		UniqueBlocks int
		TotalSize    float64
	}
	if err := json.Unmarshal(repo.Run(t, nil, "dag", "stat", "--enc=json", "--progress=false", root), &stat); err != nil {
		t.Fatal(err)
	}

	ct, b := body(part{name: "f", body: data})
	if r := post(t, ts, "", ct, b); r.status != 200 || r.trailer != "" {
		t.Fatalf("add: %d %q", r.status, r.trailer)
	}
	ct, b = body(part{name: "bad.car", body: []byte("not a car at all")})
	if r := post(t, ts, "format=car", ct, b); r.trailer == "" && r.status == 200 {
		t.Fatalf("a bad CAR was accepted")
	}
	m := scrape(t, ts)
	if m["ingestd_ingested_bytes_total"] != stat.TotalSize || m["ingestd_ingested_blocks_total"] != float64(stat.UniqueBlocks) {
		t.Errorf("ingested %v bytes in %v blocks; kubo's dag stat: %v bytes in %d blocks",
			m["ingestd_ingested_bytes_total"], m["ingestd_ingested_blocks_total"], stat.TotalSize, stat.UniqueBlocks)
	}
	if m["ingestd_car_verification_failures_total"] != 1 || m["ipfscluster_pins"] != 1 || m["ingestd_adds_in_flight"] != 0 {
		t.Errorf("car failures %v, pins %v, in flight %v; want 1, 1, 0", m["ingestd_car_verification_failures_total"], m["ipfscluster_pins"], m["ingestd_adds_in_flight"])
	}
	if m["go_goroutines"] == 0 || m[`ingestd_add_duration_seconds_count{format="unixfs",outcome="ok"}`] != 1 {
		t.Errorf("runtime or duration metrics missing: goroutines %v, add count %v", m["go_goroutines"], m[`ingestd_add_duration_seconds_count{format="unixfs",outcome="ok"}`])
	}
}
