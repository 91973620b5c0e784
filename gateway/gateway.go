package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/boxo/blockservice"
	boxogateway "github.com/ipfs/boxo/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	// DefaultReadHeaderTimeout bounds how long a client may take to send
	// its request headers, so that slow clients cannot hold connections
	// open without asking for anything (slowloris).
	DefaultReadHeaderTimeout = 10 * time.Second

	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request before it is closed.
	DefaultIdleTimeout = 2 * time.Minute

	// DefaultRetrievalTimeout is boxo's: a response that cannot write its
	// next byte for this long is ended (504 if nothing was sent yet). The
	// store is local, so only a stalled disk or client gets near it.
	DefaultRetrievalTimeout = boxogateway.DefaultRetrievalTimeout

	// DefaultMaxConcurrentRequests is boxo's: requests beyond it are
	// answered 429 at once rather than queued, so that memory and
	// goroutines stay bounded whatever the load.
	DefaultMaxConcurrentRequests = boxogateway.DefaultMaxConcurrentRequests

	// DefaultMaxRequestDuration is boxo's absolute deadline of one request
	// (one hour): a CAR of a large DAG to a slow client ends there.
	DefaultMaxRequestDuration = boxogateway.DefaultMaxRequestDuration
)

// The realm and message of the 401 answered without valid credentials:
// the REST API's (restapi), so one set of clients and docs serves both.
const (
	authRealm       = "Restricted IPFS Cluster API"
	challengeBasic  = `Basic realm="` + authRealm + `"`
	msgAccessDenied = "unauthorized: access denied"
)

// ErrBadCredential is returned (wrapped, with the user) by New for a user
// or password no client could present.
var ErrBadCredential = errors.New("gateway: basic auth user and password must not be empty, and the user must not contain ':'")

// Config configures New. Store is the only required field; the zero value
// of every other field is a trustless gateway with boxo's limits, no auth.
type Config struct {
	// Store is the block store served. Required.
	Store Store

	// Deserialized also serves deserialized responses: UnixFS files and
	// directory listings (/ipfs/{cid}/path/file), TAR, dag-json/dag-cbor
	// pages. Default false: only the trustless responses, raw blocks and
	// CARs, which clients verify; every other request is a 406.
	Deserialized bool

	// BasicAuth maps users to passwords; set, every request but CORS
	// preflights (OPTIONS) needs one of them as Basic credentials, else
	// 401. Default none: no auth.
	BasicAuth map[string]string

	// ReadHeaderTimeout: default DefaultReadHeaderTimeout; 0 means it.
	ReadHeaderTimeout time.Duration
	// IdleTimeout: default DefaultIdleTimeout; 0 means it.
	IdleTimeout time.Duration
	// RetrievalTimeout: default DefaultRetrievalTimeout; 0 means it.
	RetrievalTimeout time.Duration
	// MaxConcurrentRequests: default DefaultMaxConcurrentRequests; 0 means it.
	MaxConcurrentRequests int

	// ErrorLog receives net/http's connection errors. Default nil: the
	// standard logger.
	ErrorLog *log.Logger

	// MetricsRegistry receives boxo's gateway metrics (ipfs_http_gw_*:
	// requests, responses by status, retrieval timeouts). Default nil:
	// prometheus.DefaultRegisterer, as boxo.
	MetricsRegistry prometheus.Registerer
}

// Server is a gateway on its own net/http server. Its methods are safe
// for concurrent use.
type Server struct {
	http *http.Server

	mu       sync.Mutex
	stopped  bool           // set by Shutdown once the HTTP server is down
	handlers sync.WaitGroup // requests running; Add only under mu while !stopped
}

// NewHandler returns the gateway as an http.Handler: auth, kubo's CORS
// headers, then boxo's gateway for /ipfs/ and 404 for every other path
// (no /ipns/: names would need the network). See the package doc.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway: Config.Store is required")
	}
	for u, p := range cfg.BasicAuth {
		if u == "" || p == "" || strings.Contains(u, ":") {
			return nil, fmt.Errorf("cannot use credentials of user %q: %w", u, ErrBadCredential)
		}
	}
	if cfg.BasicAuth != nil && len(cfg.BasicAuth) == 0 {
		// An empty map is a mistake, not "auth off": nil is that.
		return nil, errors.New("gateway: Config.BasicAuth is empty; leave it nil to turn auth off")
	}
	// No exchange: a block the store lacks is a 404, never a fetch.
	blockService := blockservice.New(readOnlyBlockstore{store: cfg.Store}, nil)
	backend, err := boxogateway.NewBlocksBackend(blockService)
	if err != nil {
		return nil, fmt.Errorf("cannot create gateway backend: %w", err)
	}
	retrieval := cfg.RetrievalTimeout
	if retrieval == 0 {
		retrieval = DefaultRetrievalTimeout
	}
	concurrency := cfg.MaxConcurrentRequests
	if concurrency == 0 {
		concurrency = DefaultMaxConcurrentRequests
	}
	gw := boxogateway.NewHandler(boxogateway.Config{
		DeserializedResponses: cfg.Deserialized,
		// No DNS lookups for Host headers; NewHandler does not look at
		// them, this keeps it so if that changes.
		NoDNSLink: true,
		// A link to the public network's retrievability checker makes no
		// sense for a local store.
		DiagnosticServiceURL:  "",
		RetrievalTimeout:      retrieval,
		MaxConcurrentRequests: concurrency,
		MaxRequestDuration:    DefaultMaxRequestDuration,
		MetricsRegistry:       cfg.MetricsRegistry,
	}, backend)
	// The same CORS headers as kubo's gateway (Access-Control-Allow-Origin: *).
	gw = boxogateway.NewHeaders(nil).ApplyCors().Wrap(gw)

	var auth *basicAuth
	if len(cfg.BasicAuth) > 0 {
		auth = newBasicAuth(cfg.BasicAuth)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Auth before routing, as the REST API: even a 404 needs
		// credentials. Preflights carry none (browsers never send them).
		if auth != nil && r.Method != http.MethodOptions && !auth.allowed(r) {
			w.Header().Set("WWW-Authenticate", challengeBasic)
			http.Error(w, msgAccessDenied, http.StatusUnauthorized)
			return
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/ipfs/"):
			gw.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	}), nil
}

// New returns a Server for cfg; see NewHandler.
func New(cfg Config) (*Server, error) {
	h, err := NewHandler(cfg)
	if err != nil {
		return nil, err
	}
	readHeader := cfg.ReadHeaderTimeout
	if readHeader == 0 {
		readHeader = DefaultReadHeaderTimeout
	}
	idle := cfg.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	s := &Server{}
	s.http = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(h, w, r) }),
		ReadHeaderTimeout: readHeader,
		IdleTimeout:       idle,
		ErrorLog:          cfg.ErrorLog,
		// No WriteTimeout: a CAR of a large DAG may stream for long; boxo's
		// RetrievalTimeout ends a stalled one, MaxRequestDuration any.
	}
	return s, nil
}

// serve runs h for one request unless the server has stopped, counting it
// so that Shutdown can wait for it.
func (s *Server) serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		http.Error(w, "gateway: shutting down", http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	h.ServeHTTP(w, r)
}

// Serve serves the gateway on ln until Shutdown; it returns nil then, or
// the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully: it closes the listeners, lets
// running requests finish until ctx ends, then closes their connections.
// When it returns, no request reads the store any more, so the store can
// be closed. It returns ctx's error if requests had to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		// Cut the responses still streaming: their writes fail and their
		// request contexts end, which stops boxo's reads.
		_ = s.http.Close()
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.handlers.Wait()
	if err != nil {
		return fmt.Errorf("cannot stop the gateway gracefully: %w", err)
	}
	return nil
}

// basicAuth checks Basic credentials in constant time. It never changes
// after newBasicAuth, so every request goroutine reads it without a lock.
type basicAuth struct {
	// users holds the SHA-256 of each password, so that every comparison
	// runs over equal lengths whatever was sent.
	users map[string][sha256.Size]byte
}

func newBasicAuth(creds map[string]string) *basicAuth {
	a := &basicAuth{users: make(map[string][sha256.Size]byte, len(creds))}
	for u, p := range creds {
		a.users[u] = sha256.Sum256([]byte(p))
	}
	return a
}

// allowed reports whether r carries the Basic credentials of a user. An
// unknown user costs the same comparison as a known one.
func (a *basicAuth) allowed(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	want, known := a.users[user]
	got := sha256.Sum256([]byte(pass))
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	return known && match
}
