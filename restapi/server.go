package restapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/localstore"
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
	// Pins is the pin store.
	Pins *pinner.Store
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
	// ShutdownTimeout bounds how long Shutdown lets in-flight adds finish
	// before cancelling them. Default 30s.
	ShutdownTimeout time.Duration
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
}

// New validates cfg and builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Pins == nil || cfg.Pool == nil {
		return nil, errors.New("cannot create server: Store, Pins and Pool are required")
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
	s := &Server{cfg: cfg, addSem: make(chan struct{}, cfg.MaxConcurrentAdds)}
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
		MaxRequestBodySize:   1 << 20,
		ReadBufferSize:       8 << 10, // request line + headers; cluster allows 4 KiB plus slack
		ReadTimeout:          0,       // uploads may be long; slow clients are bounded by IdleTimeout between requests
		IdleTimeout:          2 * time.Minute,
		NoDefaultContentType: true,
		CloseOnShutdown:      true,
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(ln) }

// Shutdown stops accepting connections and waits for in-flight requests.
// Adds still running after ShutdownTimeout are cancelled: they fail, and
// nothing of theirs is recorded as pinned.
func (s *Server) Shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.srv.ShutdownWithContext(ctx)
	s.cancel()
	s.adds.Wait()
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	// fasthttp does not recover panics; one bad request must not take
	// every other request down with the process.
	defer func() {
		if r := recover(); r != nil {
			ctx.ResetBody()
			writeError(ctx, fmt.Errorf("internal error: %v", r))
		}
	}()
	path := string(ctx.Path())
	method := string(ctx.Method())
	if len(path) > 1 && strings.HasSuffix(path, "/") {
		// As gorilla/mux's StrictSlash in IPFS Cluster: 307 to the path
		// without the slash, query kept.
		u := strings.TrimRight(path, "/")
		if q := ctx.QueryArgs().QueryString(); len(q) > 0 {
			u += "?" + string(q)
		}
		ctx.Response.Header.Set("Location", u)
		ctx.SetStatusCode(fasthttp.StatusTemporaryRedirect)
		return
	}
	var err error
	switch {
	case path == "/health":
		if method != fasthttp.MethodGet {
			ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	case path == "/version" && method == fasthttp.MethodGet:
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"version": Version})
	case path == "/id" && method == fasthttp.MethodGet:
		writeJSON(ctx, fasthttp.StatusOK, s.id())
	case path == "/add" && method == fasthttp.MethodPost:
		err = s.handleAdd(ctx)
	case strings.HasPrefix(path, "/allocations/") && method == fasthttp.MethodGet:
		err = s.handleAllocation(ctx, strings.TrimPrefix(path, "/allocations/"))
	case path == "/allocations" && method == fasthttp.MethodGet:
		err = s.handleAllocations(ctx)
	case path == "/health" || path == "/version" || path == "/id" || path == "/add" || path == "/allocations":
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	default:
		writeJSON(ctx, fasthttp.StatusNotFound, errorBody{Code: fasthttp.StatusNotFound, Message: "not found"})
	}
	if err != nil {
		writeError(ctx, err)
	}
}

// idBody is IPFS Cluster's ID object (spec §5.2).
type idBody struct {
	ID                    string   `json:"id"`
	Addresses             []string `json:"addresses"`
	ClusterPeers          []string `json:"cluster_peers"`
	ClusterPeersAddresses []string `json:"cluster_peers_addresses"`
	Version               string   `json:"version"`
	Commit                string   `json:"commit"`
	RPCProtocolVersion    string   `json:"rpc_protocol_version"`
	Error                 string   `json:"error"`
	IPFS                  struct {
		Addresses []string `json:"addresses"`
		Error     string   `json:"error"`
	} `json:"ipfs"`
	Peername string `json:"peername"`
}

func (s *Server) id() idBody {
	b := idBody{
		ID:                 s.cfg.PeerID,
		Addresses:          []string{},
		ClusterPeers:       []string{s.cfg.PeerID},
		Version:            Version,
		RPCProtocolVersion: "/ipfscluster/1.0/rpc",
		Peername:           s.cfg.PeerName,
	}
	return b
}

func (s *Server) handleAllocation(ctx *fasthttp.RequestCtx, arg string) error {
	c, err := cid.Decode(arg)
	if err != nil {
		return &StatusError{Code: fasthttp.StatusBadRequest, Err: fmt.Errorf("error decoding Cid: %w", err)}
	}
	p, err := s.cfg.Pins.Get(context.Background(), c)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, p)
	return nil
}
