package restapi

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ingestd/ingestd/metrics"
)

// openAdd starts an add whose upload stops after the first part's header
// and some bytes: it holds an add slot until the test closes the pipe.
// The response, once it starts, arrives on the returned channel.
func openAdd(t *testing.T, ts *testServer, query string) (*io.PipeWriter, <-chan *http.Response) {
	t.Helper()
	ct, b := body(part{name: "held", body: randBytes(1<<20, 77)})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.url+"/add?"+query, pr)
	req.Header.Set("Content-Type", ct)
	respc := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			close(respc)
			return
		}
		respc <- resp
	}()
	// More than fasthttp reads before the add starts (addPrefetch).
	if _, err := pw.Write(b[:512<<10]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	return pw, respc
}

// value reads a counter or a gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.GetCounter().GetValue()
}

// waitInFlight polls the adds-in-flight gauge until it is n.
func waitInFlight(t *testing.T, m *metrics.Metrics, n float64) {
	t.Helper()
	for value(m.AddsInFlight) != n {
		select {
		case <-t.Context().Done():
			t.Fatalf("adds in flight never reached %v", n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestAdmissionControl: with every add slot taken, an add waits
// MaxQueueDuration, then gets IPFS Cluster's 503 error object with a
// Retry-After, and is counted; once the slot frees, adds run again.
func TestAdmissionControl(t *testing.T) {
	m := metrics.New()
	ts := startServer(t, func(c *Config) { c.MaxConcurrentAdds = 1; c.MaxQueueDuration = 50 * time.Millisecond; c.Metrics = m })
	pw, respc := openAdd(t, ts, "")
	waitInFlight(t, m, 1)
	ct, b := body(part{name: "second", body: []byte("second")})
	r := post(t, ts, "", ct, b)
	var e errorBody
	if r.status != 503 || json.Unmarshal(r.raw, &e) != nil || e.Code != 503 || !strings.Contains(e.Message, "too many concurrent adds") {
		t.Fatalf("add with no free slot: %d %s", r.status, r.raw)
	}
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if n := value(m.AdmissionRejections); n != 1 {
		t.Fatalf("admission rejections = %v, want 1", n)
	}
	pw.Close() // the held add ends (a truncated body): its slot frees
	if resp := <-respc; resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	waitInFlight(t, m, 0)
	if r := post(t, ts, "", ct, b); r.status != 200 || r.trailer != "" {
		t.Fatalf("add after the slot freed: %d %q %s", r.status, r.trailer, r.raw)
	}
}

// TestShutdownTimeoutCancelsAdds: an add still running ShutdownTimeout
// after Shutdown began is cancelled, streamed or buffered
// (stream-channels=false): Shutdown returns only once it has ended, it
// fails, and nothing of it is pinned.
func TestShutdownTimeoutCancelsAdds(t *testing.T) {
	for _, query := range []string{"", "stream-channels=false"} {
		t.Run("query="+query, func(t *testing.T) {
			m := metrics.New()
			ts := startServer(t, func(c *Config) { c.ShutdownTimeout = 100 * time.Millisecond; c.Metrics = m })
			_, respc := openAdd(t, ts, query)
			waitInFlight(t, m, 1)
			if err := ts.srv.Shutdown(); err == nil {
				t.Log("shutdown reported no timeout") // fasthttp's report varies; the add's end is what counts
			}
			// Shutdown has returned: the store and the hash pool may now be
			// closed, so no add may still be running.
			if n := value(m.AddsInFlight); n != 0 {
				t.Fatalf("Shutdown returned with %v adds still running", n)
			}
			if resp := <-respc; resp != nil {
				raw, _ := io.ReadAll(bufio.NewReader(resp.Body))
				resp.Body.Close()
				if resp.StatusCode == 200 && resp.Trailer.Get("X-Stream-Error") == "" {
					t.Fatalf("the cancelled add succeeded: %q", raw)
				}
			}
			if n, err := ts.pins.Count(t.Context()); err != nil || n != 0 {
				t.Fatalf("pins after a cancelled add: %d %v", n, err)
			}
		})
	}
}
