package restapi

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/metrics"
	"github.com/ingestd/ingestd/pinner"
)

// Version is the IPFS Cluster version whose API ingestd speaks.
const Version = "1.1.6"

// Config configures a Server. Store, Pins and Pool are required; the other
// zero values work.
type Config struct {
	// PeerID is this server's peer ID (valid base58 libp2p ID): /id reports
	// it and AddedOutput.allocations name it as the holder of the blocks.
	PeerID string
	// PeerName is reported by /id. Default "".
	PeerName string
	// Store receives the blocks of adds and makes them durable before pins
	// are recorded.
	Store *localstore.Store
	// Pins is the pin store. Required unless Pinner is given.
	Pins *pinner.Store
	// Pinner owns the pinset and the tracking of pins on the peers. nil:
	// New makes one over Pins, pinning into Store (the embedded mode) or,
	// with Fanout, on its kubo peers; the server then starts and stops it.
	Pinner *pinner.Pinner
	// Pool hashes for every add.
	Pool *ingest.HashPool
	// Fanout, when set, sends the blocks of adds to kubo peers instead of
	// Store, and pins there (Store then only backs the pinset). Started and
	// stopped by the caller. Default nil: the embedded store.
	Fanout *blockfanout.Fanout
	// MaxConcurrentAdds bounds the adds that run at once; others wait up to
	// MaxQueueDuration, then get 503 with Retry-After. 0 means 16: adds
	// share one HashPool, so more would only queue there.
	MaxConcurrentAdds int
	// MaxQueueDuration is how long an add waits for a slot. Default 10s.
	MaxQueueDuration time.Duration
	// BodyStallTimeout fails an upload whose body sends nothing for this
	// long. Default 60s.
	BodyStallTimeout time.Duration
	// MinUploadRate is the slowest an upload may arrive, in bytes per
	// second, measured over every BodyStallTimeout of time spent waiting
	// for the client: a client trickling its upload cannot hold an add
	// slot. Default 1024; negative: no minimum.
	MinUploadRate int
	// HeaderTimeout bounds how long a connection may take to send a
	// request line and headers (a TLS handshake included), and the body
	// of every request but POST /add. Default 30s, IPFS Cluster's
	// read_header_timeout.
	HeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no next
	// request for this long. Default 2m, as IPFS Cluster.
	IdleTimeout time.Duration
	// WriteStallTimeout fails a response of which the client accepts
	// nothing for this long, however long the whole response streams: a
	// client that stops reading an add's output loses its add (and its
	// slot) instead of holding it. Default 60s.
	WriteStallTimeout time.Duration
	// MaxConnections bounds the connections open at once; one more is
	// answered 503 and closed. Default 10,000, or half the process's
	// file descriptor limit if that is lower.
	MaxConnections int
	// MaxConnectionsPerIP bounds the connections open at once from one
	// client address; one more is answered 429 and closed. Default 1,024
	// (at most MaxConnections); negative: no per-address limit.
	MaxConnectionsPerIP int
	// ShutdownTimeout bounds how long Shutdown lets in-flight adds finish
	// before cancelling them. Default 30s.
	ShutdownTimeout time.Duration
	// GCInterval, in the embedded mode, runs the store's garbage
	// collection (as POST /ipfs/gc) every interval, from the first Serve
	// on. Default 0: only on request.
	GCInterval time.Duration
	// Cluster, when set, puts ingestd in front of an IPFS Cluster
	// (docs/cluster.md): adds go to the cluster peers' kubo daemons through
	// Fanout (which must be Dynamic: its peers follow the cluster's) and
	// are pinned through the cluster; every other endpoint is forwarded to
	// it; Pins and Pinner are not used. Default nil: ingestd's own pinset.
	Cluster *ClusterConfig
	// Logger receives background errors. Default: the standard logger.
	Logger *log.Logger
	// Events receives one structured line per add (who, options, bytes,
	// blocks, root, duration, outcome). Default: slog.Default().
	Events *slog.Logger
	// Metrics receives the add, admission, CAR, quorum and GC metrics and
	// is served on GET /metrics (with the API's auth). Default nil: no
	// metrics, and /metrics is a 404.
	Metrics *metrics.Metrics
	// BasicAuth maps user names to passwords (IPFS Cluster's
	// basic_auth_credentials). Empty: no auth, as IPFS Cluster's default.
	// Every request but GET /health and CORS preflights then needs Basic
	// credentials or a token from POST /token (auth.go, docs/rest-api.md).
	BasicAuth map[string]string
}

// Server is the IPFS Cluster REST API of ingestd.
type Server struct {
	cfg    Config
	srv    *fasthttp.Server
	addSem chan struct{}

	// baseCtx is cancelled when shutdown gives up waiting; every add derives
	// its context from it.
	baseCtx context.Context
	cancel  context.CancelFunc
	adds    sync.WaitGroup // running add goroutines

	pinner    *pinner.Pinner
	ownPinner bool // made by New: Shutdown stops it
	backend   backend
	cluster   *clusterBackend // in front of an IPFS Cluster; nil otherwise

	listenAddr atomic.Value // net.Addr of the last Serve, for /id

	stalledUploads atomic.Int64 // uploads ended by BodyStallTimeout or MinUploadRate

	metricsOnce sync.Once
	metricsHTTP fasthttp.RequestHandler

	lnMu          sync.Mutex // guards lns, shut, pinnerStarted, draining
	lns           []net.Listener
	shut          bool
	pinnerStarted bool
	draining      bool // Shutdown waits for adds: track refuses new ones

	peersMu sync.Mutex
	removed map[string]blockfanout.PeerConfig // DELETE /peers, by peer ID, so POST /peers can restore them
}

// New validates cfg and builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || (cfg.Pins == nil && cfg.Pinner == nil && cfg.Cluster == nil) || cfg.Pool == nil {
		return nil, errors.New("cannot create server: Store, Pins (or Pinner, or Cluster) and Pool are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = log.Default()
	}
	if cfg.PeerID == "" || !validPeerID(cfg.PeerID) {
		return nil, fmt.Errorf("cannot create server: peer ID %q is not valid", cfg.PeerID)
	}
	if err := checkCredentials(cfg.BasicAuth); err != nil {
		return nil, fmt.Errorf("cannot create server: %w", err)
	}
	if cfg.MaxConcurrentAdds <= 0 {
		cfg.MaxConcurrentAdds = 16
	}
	if cfg.MaxQueueDuration <= 0 {
		cfg.MaxQueueDuration = 10 * time.Second
	}
	if cfg.BodyStallTimeout <= 0 {
		cfg.BodyStallTimeout = time.Minute
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 30 * time.Second
	}
	cfg.limitDefaults()
	s := &Server{cfg: cfg, addSem: make(chan struct{}, cfg.MaxConcurrentAdds), pinner: cfg.Pinner, removed: map[string]blockfanout.PeerConfig{}}
	if cfg.Cluster != nil {
		b, err := newClusterBackend(s, *cfg.Cluster)
		if err != nil {
			return nil, fmt.Errorf("cannot create server: %w", err)
		}
		s.cluster, s.backend = b, b
	} else if s.pinner == nil {
		p, err := s.newPinner()
		if err != nil {
			return nil, err
		}
		s.pinner, s.ownPinner = p, true
	}
	if s.backend == nil {
		s.backend = localBackend{s}
	}
	if s.pinner != nil && cfg.Pins != nil {
		registerPinGauges(cfg.Metrics, s.pinner, cfg.Pins)
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.srv = &fasthttp.Server{
		Handler:           s.authenticate(s.handle),
		Name:              "ingestd",
		StreamRequestBody: true,
		// Without this fasthttp reads a multipart body that has a
		// Content-Length (curl -F, browsers, the JS clients) into a parsed
		// form, spilling files to temporary files, before the handler runs:
		// the upload would be read twice and the response would start only
		// after the whole body arrived.
		DisablePreParseMultipartForm: true,
		// With StreamRequestBody this is only how much of a body is read
		// before the handler runs; /add reads the rest as a stream.
		MaxRequestBodySize: 1 << 20,
		ReadBufferSize:     8 << 10, // request line + headers; cluster allows 4 KiB plus slack
		// The first request's line and headers, and bodies other than
		// uploads, which uploadReader bounds by its stall and rate.
		ReadTimeout: cfg.HeaderTimeout,
		IdleTimeout: cfg.IdleTimeout,
		// Set before each response is written; streamed responses move it
		// forward with every object (extendWrite).
		WriteTimeout:         cfg.WriteStallTimeout,
		NoDefaultContentType: true,
		CloseOnShutdown:      true,
		ErrorHandler:         requestError,
		HeaderReceived:       requestConfig,
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
// The pinner New made starts with the first Serve, so that a Server that
// is never served runs nothing.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	if s.shut {
		s.lnMu.Unlock()
		ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	if !s.pinnerStarted {
		s.pinnerStarted = true
		if s.ownPinner {
			if err := s.pinner.Start(); err != nil {
				s.lnMu.Unlock()
				return fmt.Errorf("cannot serve: %w", err)
			}
		}
		if s.cluster != nil {
			s.adds.Go(func() { s.cluster.run(s.baseCtx) })
		}
		if s.cfg.GCInterval > 0 && s.pinner != nil && s.pinner.Embedded() {
			s.adds.Go(s.collectEvery)
		}
	}
	s.lnMu.Unlock()
	s.listenAddr.Store(ln.Addr())
	return s.srv.Serve(newLimitListener(ln, s.cfg.MaxConnections, s.cfg.MaxConnectionsPerIP, s.logf))
}

// Shutdown stops accepting connections and waits for in-flight requests.
// Adds still running after ShutdownTimeout are cancelled: they fail, and
// nothing of theirs is recorded as pinned.
func (s *Server) Shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// A Serve that has not reached fasthttp yet would miss fasthttp's own
	// listener shutdown: its listener is closed here, so it returns.
	s.lnMu.Lock()
	s.shut = true
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.lnMu.Unlock()
	err := s.srv.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil // closed above
	}
	s.lnMu.Lock()
	s.draining = true
	s.lnMu.Unlock()
	s.cancel()
	s.adds.Wait()
	if s.ownPinner {
		s.pinner.Stop()
	}
	return err
}

// errShuttingDown answers requests that would start work Shutdown no
// longer waits for.
var errShuttingDown = &StatusError{Code: 503, RetryAfter: 5, Err: errors.New("server is shutting down")}

// track counts work that Shutdown must wait for (adds, streams); it
// refuses once Shutdown has started waiting, so that no Add races the
// WaitGroup's Wait. done must be called when the work ends.
func (s *Server) track() (done func(), ok bool) {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	if s.draining {
		return nil, false
	}
	s.adds.Add(1)
	return s.adds.Done, true
}

// logf logs a background error.
func (s *Server) logf(format string, args ...any) { s.cfg.Logger.Printf(format, args...) }

// events is where add lines go.
func (s *Server) events() *slog.Logger {
	if s.cfg.Events != nil {
		return s.cfg.Events
	}
	return slog.Default()
}

// metricsHandler serves GET /metrics in the Prometheus text format.
func (s *Server) metricsHandler(ctx *fasthttp.RequestCtx) {
	s.metricsOnce.Do(func() {
		s.metricsHTTP = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.cfg.Metrics.Registry, promhttp.HandlerOpts{}))
	})
	s.metricsHTTP(ctx)
}

// pinCountTTL is how long a counted pinset size is reused: counting reads
// every key, which takes about a second per million pins.
const pinCountTTL = 30 * time.Second

// registerPinGauges registers IPFS Cluster's pin gauges: the pinset size
// (counted at most every pinCountTTL) and the tracker's queued, pinning
// and failed items.
func registerPinGauges(m *metrics.Metrics, p *pinner.Pinner, store *pinner.Store) {
	if m == nil {
		return
	}
	var mu sync.Mutex
	var count float64
	var counted time.Time
	m.Gauge("ipfscluster_pins", "Pins in the pinset.", func() float64 {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(counted) > pinCountTTL {
			ctx, cancel := context.WithTimeout(context.Background(), pinCountTTL)
			n, err := store.Count(ctx)
			cancel()
			if err == nil {
				count, counted = float64(n), time.Now()
			}
		}
		return count
	})
	for _, g := range []struct {
		name string
		st   pinner.Status
	}{
		{"ipfscluster_pins_pin_queued", pinner.StatusPinQueued},
		{"ipfscluster_pins_pinning", pinner.StatusPinning},
		{"ipfscluster_pins_pin_error", pinner.StatusPinError},
		{"ipfscluster_pins_unexpectedly_unpinned", pinner.StatusUnexpectedlyUnpinned},
	} {
		m.Gauge(g.name, "Tracker items in status "+string(g.st)+", over all peers.", func() float64 {
			return float64(p.TrackerCounts()[g.st])
		})
	}
}
