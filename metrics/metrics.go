// Package metrics holds ingestd's Prometheus metrics (docs/metrics.md):
// IPFS Cluster's names where the meaning is the same (ipfscluster_*), and
// ingestd_* for the rest, with the Go runtime and process collectors. The
// packages that do the work hold a *Metrics (nil-safe: a nil *Metrics
// records nothing) and update it; cmd/ingestd serves its Registry.
//
// It is a leaf: it imports none of ingestd's packages.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is every metric of one ingestd process.
type Metrics struct {
	Registry *prometheus.Registry

	AddsInFlight        prometheus.Gauge
	AddDuration         *prometheus.HistogramVec // format, outcome
	IngestedBytes       prometheus.Counter
	IngestedBlocks      prometheus.Counter
	AdmissionRejections prometheus.Counter
	CarVerifyFailures   prometheus.Counter

	BlocksPut       prometheus.Counter // ipfscluster_blocks_put
	BlocksAddedSize prometheus.Counter // ipfscluster_blocks_added_size
	BlocksPutErrors prometheus.Counter // ipfscluster_blocks_put_errors
	PeerBytes       *prometheus.CounterVec
	PeerErrors      *prometheus.CounterVec
	PeerAckLatency  *prometheus.HistogramVec
	QuorumFailures  prometheus.Counter

	GCRuns          prometheus.Counter
	GCRemovedBlocks prometheus.Counter
}

// New registers every metric on a new registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.AddsInFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ingestd_adds_in_flight", Help: "Adds running now."})
	m.AddDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ingestd_add_duration_seconds",
		Help:    "Duration of adds from the first byte read to the last output, by format (unixfs, car) and outcome (ok, error).",
		Buckets: prometheus.ExponentialBuckets(0.005, 4, 10), // 5 ms .. ~22 min
	}, []string{"format", "outcome"})
	m.IngestedBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_ingested_bytes_total", Help: "Bytes of blocks produced by adds (UnixFS) or verified (CAR)."})
	m.IngestedBlocks = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_ingested_blocks_total", Help: "Blocks produced by adds or verified in CARs."})
	m.AdmissionRejections = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_admission_rejections_total", Help: "Adds answered 503 because every add slot stayed busy."})
	m.CarVerifyFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_car_verification_failures_total", Help: "CAR uploads rejected: bad header, hash mismatch, missing or malformed block."})
	m.BlocksPut = prometheus.NewCounter(prometheus.CounterOpts{Name: "ipfscluster_blocks_put", Help: "Blocks acknowledged by kubo peers' block/put (one per block and peer)."})
	m.BlocksAddedSize = prometheus.NewCounter(prometheus.CounterOpts{Name: "ipfscluster_blocks_added_size", Help: "Bytes of blocks acknowledged by kubo peers' block/put."})
	m.BlocksPutErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "ipfscluster_blocks_put_errors", Help: "block/put requests to kubo peers that failed."})
	m.PeerBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ingestd_peer_blockput_bytes_total", Help: "Block bytes acknowledged, by kubo peer."}, []string{"peer"})
	m.PeerErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ingestd_peer_blockput_errors_total", Help: "Failed block/put requests, by kubo peer."}, []string{"peer"})
	m.PeerAckLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ingestd_peer_blockput_request_seconds",
		Help:    "Duration of block/put requests, by kubo peer.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"peer"})
	m.QuorumFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_quorum_failures_total", Help: "Adds or pins that fewer than replication-min peers completed."})
	m.GCRuns = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_gc_runs_total", Help: "Garbage collections of the embedded store."})
	m.GCRemovedBlocks = prometheus.NewCounter(prometheus.CounterOpts{Name: "ingestd_gc_removed_blocks_total", Help: "Blocks removed by garbage collections of the embedded store."})
	for _, c := range []prometheus.Collector{m.AddsInFlight, m.AddDuration, m.IngestedBytes, m.IngestedBlocks, m.AdmissionRejections,
		m.CarVerifyFailures, m.BlocksPut, m.BlocksAddedSize, m.BlocksPutErrors, m.PeerBytes, m.PeerErrors, m.PeerAckLatency,
		m.QuorumFailures, m.GCRuns, m.GCRemovedBlocks} {
		f(c)
	}
	return m
}

// AddStarted counts an add in flight and returns the function that records
// its end.
func (m *Metrics) AddStarted(format string) (done func(err error)) {
	if m == nil {
		return func(error) {}
	}
	m.AddsInFlight.Inc()
	start := time.Now()
	return func(err error) {
		m.AddsInFlight.Dec()
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		m.AddDuration.WithLabelValues(format, outcome).Observe(time.Since(start).Seconds())
	}
}

// Ingested counts blocks and bytes produced or verified by an add.
func (m *Metrics) Ingested(blocks, bytes int64) {
	if m == nil {
		return
	}
	m.IngestedBlocks.Add(float64(blocks))
	m.IngestedBytes.Add(float64(bytes))
}

// AdmissionRejected counts an add refused for want of a slot.
func (m *Metrics) AdmissionRejected() {
	if m != nil {
		m.AdmissionRejections.Inc()
	}
}

// CarRejected counts a CAR upload that failed verification.
func (m *Metrics) CarRejected() {
	if m != nil {
		m.CarVerifyFailures.Inc()
	}
}

// QuorumFailed counts an add or pin that too few peers completed.
func (m *Metrics) QuorumFailed() {
	if m != nil {
		m.QuorumFailures.Inc()
	}
}

// Collected counts a garbage collection that removed n blocks.
func (m *Metrics) Collected(n int) {
	if m != nil {
		m.GCRuns.Inc()
		m.GCRemovedBlocks.Add(float64(n))
	}
}

// PeerAcked records n bytes in blocks acknowledged by peer.
func (m *Metrics) PeerAcked(peer string, blocks int, n int64) {
	if m == nil {
		return
	}
	m.BlocksPut.Add(float64(blocks))
	m.BlocksAddedSize.Add(float64(n))
	m.PeerBytes.WithLabelValues(peer).Add(float64(n))
}

// PeerRequest records one block/put request to peer: its duration and
// whether it failed.
func (m *Metrics) PeerRequest(peer string, d time.Duration, failed bool) {
	if m == nil {
		return
	}
	m.PeerAckLatency.WithLabelValues(peer).Observe(d.Seconds())
	if failed {
		m.BlocksPutErrors.Inc()
		m.PeerErrors.WithLabelValues(peer).Inc()
	}
}

// Gauge registers a gauge whose value is read from fn at each scrape.
func (m *Metrics) Gauge(name, help string, fn func() float64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}
