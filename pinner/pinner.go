package pinner

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/kuborpc"
)

// Defaults of Config; each bounds time or memory.
const (
	// DefaultWorkers is the pin and unpin operations run at once per peer
	// (IPFS Cluster's concurrent_pins is 10; kubo serializes pins on its
	// pin lock anyway).
	DefaultWorkers = 8
	// DefaultQueueSize is the jobs waiting per peer before further ones
	// wait in the tracker (as queued items) for the pump.
	DefaultQueueSize = 4096
	// DefaultPinTimeout cancels a pin whose progress did not grow for this
	// long, and bounds an unpin (IPFS Cluster's pin_timeout, 2m).
	DefaultPinTimeout = 2 * time.Minute
	// DefaultMaxAttempts is how often an operation is tried before it is
	// left in pin_error or unpin_error until a recover.
	DefaultMaxAttempts = 3
	// DefaultCheckTimeout bounds one live status call to one peer (IPFS
	// Cluster asks each peer with a 15 s timeout).
	DefaultCheckTimeout = 15 * time.Second
	// DefaultReconcileInterval is how often every peer's pin/ls is compared
	// with the pinset.
	DefaultReconcileInterval = time.Minute
	// DefaultRecoverInterval is how often failed items are retried
	// automatically (IPFS Cluster's pin_recover_interval).
	DefaultRecoverInterval = 12 * time.Minute
	// DefaultExpiryInterval is how often the pinset is scanned for expired
	// pins.
	DefaultExpiryInterval = 30 * time.Second
)

// Sentinel errors; the REST layer maps them to statuses.
var (
	// ErrBadRequest marks an invalid pin request (400).
	ErrBadRequest = errors.New("pinner: bad request")
	// ErrStopped: the pinner was stopped.
	ErrStopped = errors.New("pinner: stopped")
)

// Target is one pin target, a "cluster peer": a kubo daemon with its RPC
// client, or (RPC nil) ingestd's embedded store.
type Target struct {
	PeerState
	Addresses []string        // swarm multiaddrs, from kubo's id
	RPC       *kuborpc.Client // nil: the embedded store
}

// Config configures a Pinner. Store and Self are required; the other zero
// values work.
type Config struct {
	// Store is the durable pinset.
	Store *Store
	// Self is ingestd's own peer: its ID and name are the embedded store's
	// peer, and it is what /id reports.
	Self PeerState
	// Targets returns the kubo daemons that hold the pins, in configuration
	// order, with their last liveness check (blockfanout watches them).
	// nil: the embedded mode, where Self is the one peer and "pinned"
	// means the DAG is complete in the embedded store.
	Targets func() []Target
	// LocalCheck reports whether the DAG below c (only c if !recursive) is
	// complete in the embedded store; an error says what is missing. Used
	// in the embedded mode only. nil: every pin counts as complete.
	LocalCheck func(ctx context.Context, c cid.Cid, recursive bool) error
	// LocalFreeSpace reports the embedded store's free bytes (the
	// freespace metric and allocation weight of Self). nil: 0.
	LocalFreeSpace func() uint64
	// LocalResolve resolves an /ipfs/ path with sub-path in the embedded
	// store. nil: such paths need a kubo peer.
	LocalResolve func(ctx context.Context, path string) (cid.Cid, error)
	// Workers per peer. Default DefaultWorkers; 0 means the default.
	Workers int
	// QueueSize per peer. Default DefaultQueueSize; 0 means the default.
	QueueSize int
	// PinTimeout: see DefaultPinTimeout. 0 means the default.
	PinTimeout time.Duration
	// MaxAttempts: see DefaultMaxAttempts. 0 means the default.
	MaxAttempts int
	// CheckTimeout: see DefaultCheckTimeout. 0 means the default.
	CheckTimeout time.Duration
	// ReconcileInterval: see DefaultReconcileInterval. 0 means the default.
	ReconcileInterval time.Duration
	// RecoverInterval: see DefaultRecoverInterval. 0 means the default.
	RecoverInterval time.Duration
	// ExpiryInterval: see DefaultExpiryInterval. 0 means the default.
	ExpiryInterval time.Duration
	// MetricTTL is how long a peer's ping stays valid: a peer not seen
	// alive for longer raises an alert. Default 30s; 0 means the default.
	MetricTTL time.Duration
	// Logger receives one line per background failure. Default: the
	// standard logger.
	Logger *log.Logger
}

// Pinner owns the pin lifecycle: the pinset (Store), the allocation of new
// pins, one tracker per peer that pins and unpins with bounded workers and
// retries, the status of every pin on every peer, recover, expiry and the
// reconciliation of the trackers with what the peers really hold.
//
// Create it with New, Start it, Stop it at the end. All methods are safe
// for concurrent use.
type Pinner struct {
	cfg Config

	ctx    context.Context // ends with Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards trackers, started, stopped, alerts
	trackers map[string]*peerTracker
	started  bool
	stopped  bool
	alerts   []Alert
	lastPing map[string]time.Time // peer ID -> last time it was seen alive
}

// New validates cfg and returns a Pinner. Nothing runs until Start.
func New(cfg Config) (*Pinner, error) {
	if cfg.Store == nil {
		return nil, errors.New("cannot create pinner: Store is required")
	}
	if cfg.Self.ID == "" {
		return nil, errors.New("cannot create pinner: Self.ID is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Workers, DefaultWorkers)
	def(&cfg.QueueSize, DefaultQueueSize)
	def(&cfg.MaxAttempts, DefaultMaxAttempts)
	defD(&cfg.PinTimeout, DefaultPinTimeout)
	defD(&cfg.CheckTimeout, DefaultCheckTimeout)
	defD(&cfg.ReconcileInterval, DefaultReconcileInterval)
	defD(&cfg.RecoverInterval, DefaultRecoverInterval)
	defD(&cfg.ExpiryInterval, DefaultExpiryInterval)
	defD(&cfg.MetricTTL, metricTTL)
	if cfg.Logger == nil {
		cfg.Logger = log.Default()
	}
	cfg.Self.Alive = true
	p := &Pinner{cfg: cfg, trackers: map[string]*peerTracker{}, lastPing: map[string]time.Time{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Embedded reports whether the pinner pins into the embedded store (no
// kubo targets).
func (p *Pinner) Embedded() bool { return p.cfg.Targets == nil }

// Self returns ingestd's own peer.
func (p *Pinner) Self() PeerState { return p.cfg.Self }

// Peers returns the current pin targets: the kubo daemons, or the
// embedded store as Self.
func (p *Pinner) Peers() []Target {
	if p.cfg.Targets == nil {
		self := p.cfg.Self
		if p.cfg.LocalFreeSpace != nil {
			self.FreeSpace = p.cfg.LocalFreeSpace()
		}
		return []Target{{PeerState: self}}
	}
	return p.cfg.Targets()
}

// Start runs the maintenance loop (reconciliation, recover, expiry, the
// queue pump, the ping alerts). The first reconciliation runs at once in
// the background: pins that a peer lost while ingestd was down are queued
// again.
func (p *Pinner) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.stopped:
		return fmt.Errorf("cannot start pinner: %w", ErrStopped)
	case p.started:
		return errors.New("cannot start pinner: already started")
	}
	p.started = true
	p.wg.Go(p.maintain)
	return nil
}

// Stop ends every worker and loop and waits for them. Running operations
// are cancelled; their items stay as they were (the next start reconciles).
func (p *Pinner) Stop() {
	p.mu.Lock()
	p.stopped = true
	ts := make([]*peerTracker, 0, len(p.trackers))
	for _, t := range p.trackers {
		ts = append(ts, t)
	}
	p.mu.Unlock()
	for _, t := range ts {
		t.close()
	}
	p.cancel()
	p.wg.Wait()
}

// tracker returns the tracker of peer id, creating it and its workers on
// first use. It returns nil once the pinner is stopped.
func (p *Pinner) tracker(id string) *peerTracker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.trackers[id]; t != nil {
		return t
	}
	if p.stopped {
		return nil
	}
	t := newPeerTracker(id, p.cfg.QueueSize)
	p.trackers[id] = t
	for range p.cfg.Workers {
		p.wg.Go(func() {
			t.runWorker(p.ctx, func(ctx context.Context, j job) error { return p.run(ctx, id, j) }, p.cfg.MaxAttempts, backoff)
		})
	}
	return t
}

// existingTracker returns the tracker of id if it exists.
func (p *Pinner) existingTracker(id string) *peerTracker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.trackers[id]
}

// backoff between attempts of one operation: 1s, 2s, 4s… up to 1 min.
func backoff(attempt int) time.Duration {
	return min(time.Second<<min(attempt-1, 6), time.Minute)
}

// target finds the current target of peer id.
func (p *Pinner) target(id string) (Target, bool) {
	for _, t := range p.Peers() {
		if t.ID == id {
			return t, true
		}
	}
	return Target{}, false
}

// run performs one job on peer id.
func (p *Pinner) run(ctx context.Context, id string, j job) error {
	t, ok := p.target(id)
	if !ok {
		return fmt.Errorf("cannot reach peer %s: it is no longer a target", id)
	}
	if t.RPC == nil {
		if j.op == opUnpin || p.cfg.LocalCheck == nil {
			return nil
		}
		return p.cfg.LocalCheck(ctx, j.c, j.recursive)
	}
	switch j.op {
	case opUnpin:
		ctx, cancel := context.WithTimeout(ctx, p.cfg.PinTimeout)
		defer cancel()
		return t.RPC.PinRm(ctx, j.c)
	default:
		if j.from.Defined() && j.recursive {
			// kubo pins the new DAG by diffing it against the old one;
			// when the old one is not pinned there, a plain pin follows.
			uctx, cancel := context.WithTimeout(ctx, p.cfg.PinTimeout)
			err := t.RPC.PinUpdate(uctx, j.from, j.c)
			cancel()
			if err == nil {
				return nil
			}
		}
		return t.RPC.PinAdd(ctx, j.c, j.recursive, j.name, p.cfg.PinTimeout)
	}
}

// allocated returns the peers that should hold pin (every target for
// allocations []), and whether peer id is one of them.
func isAllocated(pin Pin, id string) bool {
	return len(pin.Allocations) == 0 || slices.Contains(pin.Allocations, id)
}
