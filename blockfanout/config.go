package blockfanout

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ingestd/ingestd/kuborpc"
	"github.com/ingestd/ingestd/metrics"
)

// Defaults of Config. Each bounds memory or time; see the field docs.
const (
	// DefaultQueueBlocks is the number of blocks a session keeps for a peer
	// that has not acknowledged them yet.
	DefaultQueueBlocks = 128

	// DefaultQueueBytes is the number of block bytes a session keeps for a
	// peer that has not acknowledged them yet: 8 MiB, 32 blocks of the
	// default 256 KiB chunk, i.e. two 4 MiB dag/import segments in flight.
	// A 4 GiB add to 3 peers peaked at 199 MiB RSS with 64 MiB, 137 MiB
	// with 16 MiB and 108.5 MiB with 8 MiB: the heap profile at the peak
	// holds the queued blocks (never freed to a pool: the importer's leaf
	// buffers become garbage once acknowledged), and the garbage
	// collector lets the heap grow to twice what is live, so each MiB of
	// queue costs about two of RSS. The budget is 128 MiB (issue 12,
	// BENCHMARKS.md).
	DefaultQueueBytes = 8 << 20

	// DefaultStallTimeout is how long a peer may owe an acknowledgement
	// before it is failed: IPFS Cluster's pin_timeout logic, applied to
	// block/put.
	DefaultStallTimeout = 60 * time.Second

	// DefaultMaxRetries is how many transient errors a peer may have in one
	// session (or one Pin) before it is dropped.
	DefaultMaxRetries = 3

	// DefaultLagTimeout is how long a peer that the quorum does not need
	// may hold up Put (or Close) without making progress before it is
	// dropped: long enough for a busy kubo's pauses, far below the
	// StallTimeout and retries (4 × 60s) it would cost otherwise (issue 11).
	DefaultLagTimeout = 10 * time.Second

	// DefaultCheckInterval is how often every peer's /api/v0/id and
	// /api/v0/repo/stat are polled.
	DefaultCheckInterval = 5 * time.Second
)

// PeerConfig names one IPFS (kubo) daemon.
type PeerConfig struct {
	// Name identifies the peer in logs, errors and Result.Failed, and can
	// be given to Allocate and RemovePeer. Default: the URL. Names must be
	// unique.
	Name string
	// URL is the base of the kubo RPC API, e.g. http://127.0.0.1:5001.
	// Required; http or https; a trailing slash is ignored.
	URL string
}

// Config configures a Fanout. The zero value works except for Peers.
type Config struct {
	// Peers are the kubo daemons blocks go to. At least one is required
	// unless Dynamic; more can be added later with AddPeer.
	Peers []PeerConfig

	// Metrics receives per-peer block/put bytes, errors and request
	// durations. Default nil: none recorded.
	Metrics *metrics.Metrics

	// Dynamic allows an empty Peers: the peer set comes from AddPeer and
	// RemovePeer only (ingestd in front of an IPFS Cluster follows the
	// cluster's peers). Default false.
	Dynamic bool

	// QueueBlocks is the most blocks a session holds for one peer until
	// that peer acknowledges them (the peer's queue, counting blocks not
	// yet written and blocks written but not acknowledged). When any peer
	// of a session is that far behind, Session.Put waits. Default 128
	// (DefaultQueueBlocks); 0 means the default. It must be at least 2:
	// kubo acknowledges a block only once the next part has begun.
	QueueBlocks int

	// QueueBytes bounds the same queue in bytes. A queue holding fewer than
	// two blocks always takes one more (kubo acknowledges a block only
	// when the next begins), so the bound is max(QueueBytes, the two
	// largest blocks). Blocks are shared by the peers of a session, so
	// this is also the bound on the bytes one session holds. Default 8
	// MiB (DefaultQueueBytes); 0 means the default.
	QueueBytes int64

	// StallTimeout fails a peer (then retried) that owes an
	// acknowledgement and has for this long neither acknowledged a block
	// nor taken a write (a block being written to a slow link is progress;
	// a peer that takes bytes but never answers is failed once its queue is
	// full); a pin whose progress does not grow for this long fails the
	// same way. Waiting for the caller's next block is not a stall. Default
	// 60s (DefaultStallTimeout); 0 means the default.
	StallTimeout time.Duration

	// MaxRetries is how many transient errors (connection refused or
	// reset, HTTP 5xx, stall, acknowledgement mismatch) one peer may have
	// in one session or one Pin before it is dropped. Retries back off
	// exponentially from 100ms to 5s, or wait as long as a Retry-After
	// header says (a Retry-After beyond StallTimeout drops the peer at
	// once). HTTP 4xx other than 408 and 429 is not retried. Default 3
	// (DefaultMaxRetries); 0 means the default, -1 means no retries.
	MaxRetries int

	// LagTimeout drops a peer that holds up Put (its queue is the fullest)
	// or Close, owes an acknowledgement and has made no progress for this
	// long, when the other live peers still make the quorum (minOK of
	// NewSession): the quorum does not need it, so the add does not wait
	// StallTimeout and MaxRetries for it. A peer that the quorum needs is
	// waited for as before. Default 10s (DefaultLagTimeout); 0 means the
	// default.
	LagTimeout time.Duration

	// BlockPut sends blocks with block/put only. By default each peer gets
	// them as CAR segments through dag/import (kubo stores them in batches,
	// with about half the CPU of block/put), and falls back to block/put
	// if its dag/import answers 403, 404, 405 or 501 (an old kubo or a
	// proxy that does not allow it); see docs/peers.md. Default false.
	BlockPut bool

	// CheckInterval is how often each peer's liveness (/api/v0/id) and
	// free space (/api/v0/repo/stat?size-only=true) are polled after
	// Start. Default 5s (DefaultCheckInterval); 0 means the default.
	CheckInterval time.Duration

	// Client sends every request. It must not have a Timeout (block/put
	// streams last as long as an add) and must allow one connection per
	// session and peer. Default: one kuborpc.NewHTTPClient shared by every
	// peer, whose transport keeps idle connections to each for reuse; nil
	// means the default.
	Client *http.Client
}

// config is Config with defaults applied.
type config struct {
	queueBlocks   int
	queueBytes    int64
	segmentBlocks int   // most blocks of one dag/import request: half a queue
	segmentBytes  int64 // most block bytes of one dag/import request: half a queue
	lagTimeout    time.Duration
	blockPut      bool
	stallTimeout  time.Duration
	maxRetries    int
	checkInterval time.Duration
	client        *http.Client
	metrics       *metrics.Metrics
}

// newConfig applies the defaults to cfg and rejects contradictions. The
// peers are checked by newPeer.
func newConfig(cfg Config) (config, error) {
	c := config{
		queueBlocks:   cfg.QueueBlocks,
		queueBytes:    cfg.QueueBytes,
		stallTimeout:  cfg.StallTimeout,
		maxRetries:    cfg.MaxRetries,
		checkInterval: cfg.CheckInterval,
		lagTimeout:    cfg.LagTimeout,
		blockPut:      cfg.BlockPut,
		client:        cfg.Client,
		metrics:       cfg.Metrics,
	}
	switch {
	case c.queueBlocks == 0:
		c.queueBlocks = DefaultQueueBlocks
	case c.queueBlocks < 2:
		return config{}, fmt.Errorf("queue blocks (%d) cannot be lower than 2: kubo acknowledges a block only when the next one begins", c.queueBlocks)
	}
	switch {
	case c.queueBytes == 0:
		c.queueBytes = DefaultQueueBytes
	case c.queueBytes < 0:
		return config{}, fmt.Errorf("queue bytes (%d) cannot be negative", c.queueBytes)
	}
	switch {
	case c.stallTimeout == 0:
		c.stallTimeout = DefaultStallTimeout
	case c.stallTimeout < 0:
		return config{}, fmt.Errorf("stall timeout (%v) cannot be negative", c.stallTimeout)
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries == -1:
		c.maxRetries = 0
	case c.maxRetries < -1:
		return config{}, fmt.Errorf("max retries (%d) cannot be lower than -1", c.maxRetries)
	}
	switch {
	case c.lagTimeout == 0:
		c.lagTimeout = DefaultLagTimeout
	case c.lagTimeout < 0:
		return config{}, fmt.Errorf("lag timeout (%v) cannot be negative", c.lagTimeout)
	}
	// A dag/import is acknowledged as a whole, at its end, so a segment
	// is half a queue: the other half takes new blocks while kubo
	// commits the segment and answers.
	c.segmentBlocks = max(c.queueBlocks/2, 1)
	c.segmentBytes = max(c.queueBytes/2, 1)
	switch {
	case c.checkInterval == 0:
		c.checkInterval = DefaultCheckInterval
	case c.checkInterval < 0:
		return config{}, fmt.Errorf("check interval (%v) cannot be negative", c.checkInterval)
	}
	if c.client == nil {
		c.client = kuborpc.NewHTTPClient()
	} else if c.client.Timeout != 0 {
		return config{}, fmt.Errorf("client timeout (%v) must be 0: block/put streams last as long as an add; use StallTimeout", c.client.Timeout)
	}
	if len(cfg.Peers) == 0 && !cfg.Dynamic {
		return config{}, errors.New("no peers configured")
	}
	return c, nil
}
