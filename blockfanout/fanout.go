package blockfanout

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ingestd/ingestd/pinner"
)

// Sentinel errors. Errors returned by this package wrap them, with the peers
// and blocks concerned in the message.
var (
	// ErrNotEnoughPeers: Allocate found fewer live peers than asked for.
	// It is the pinner's error: the policy is the pinner's.
	ErrNotEnoughPeers = pinner.ErrNotEnoughPeers
	// ErrQuorum: fewer than the required number of peers acknowledged
	// every block of a session (or pinned).
	ErrQuorum = errors.New("blockfanout: quorum not reached")
	// ErrPeerUnavailable: a peer is down, or was dropped from a session or
	// a pin after its retries ran out.
	ErrPeerUnavailable = errors.New("blockfanout: peer unavailable")
	// ErrStalled: a peer owed an acknowledgement for longer than
	// Config.StallTimeout, or a pin's progress did not grow for that long.
	// It is retried like any transient error.
	ErrStalled = errors.New("blockfanout: peer stalled")
	// ErrLagging: a peer held up a session that the other peers could
	// complete, with no progress for Config.LagTimeout, and was dropped
	// without a retry. It always comes with ErrPeerUnavailable.
	ErrLagging = errors.New("blockfanout: peer lagging behind the quorum")
	// ErrStopped: the Fanout was stopped.
	ErrStopped = errors.New("blockfanout: fanout stopped")
	// ErrUnknownPeer: RemovePeer was given a name or ID that no peer has.
	ErrUnknownPeer = errors.New("blockfanout: unknown peer")
)

// Fanout sends blocks to a set of kubo daemons and pins on them. Create it
// with New, call Start to learn the peers' IDs and watch their liveness,
// and Stop at the end. Peers can be added and removed while it runs. All
// methods are safe for concurrent use.
type Fanout struct {
	cfg config

	stopCtx context.Context // canceled by Stop
	stop    context.CancelFunc
	wg      sync.WaitGroup // every goroutine this package starts

	ownClient bool // cfg.client was made by New; Stop closes its idle connections

	mu      sync.Mutex // guards the fields below and the Peer fields marked so
	started bool
	stopped bool
	// peers is copy-on-write: AddPeer and RemovePeer replace the slice and
	// never modify it, so a slice read under mu can be used after unlocking.
	peers []*Peer
}

// New validates cfg and returns a Fanout. No request is made until Start,
// AddPeer, NewSession, Pin or ConnectAll.
func New(cfg Config) (*Fanout, error) {
	c, err := newConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot create fanout: %w", err)
	}
	f := &Fanout{cfg: c, ownClient: cfg.Client == nil}
	for i, pc := range cfg.Peers {
		p, err := f.newPeer(pc)
		if err == nil {
			err = conflict(f.peers, p)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot create fanout: peer %d: %w", i, err)
		}
		f.peers = append(f.peers, p)
	}
	f.stopCtx, f.stop = context.WithCancel(context.Background())
	return f, nil
}

// Start checks every peer once (concurrently, bounded by ctx) to learn its
// kubo peer ID, addresses and free space, then starts the goroutine that
// repeats the check every CheckInterval. Peers that do not answer are
// recorded as down and checked again; Start fails only if ctx ends first,
// if it was called before, or after Stop.
func (f *Fanout) Start(ctx context.Context) error {
	f.mu.Lock()
	switch {
	case f.stopped:
		f.mu.Unlock()
		return fmt.Errorf("cannot start fanout: %w", ErrStopped)
	case f.started:
		f.mu.Unlock()
		return errors.New("cannot start fanout: already started")
	}
	f.started = true
	f.mu.Unlock()

	f.checkAll(ctx)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cannot start fanout: %w", err)
	}
	if !f.goTracked(f.checkLoop) {
		return fmt.Errorf("cannot start fanout: %w", ErrStopped)
	}
	return nil
}

// Stop ends the liveness checks, aborts running sessions and pins (they
// fail with ErrStopped), and waits for every goroutine of f to return.
func (f *Fanout) Stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.stop()
	f.wg.Wait()
	if f.ownClient {
		f.cfg.client.CloseIdleConnections()
	}
}

// goTracked runs fn in a goroutine that Stop waits for, unless f is
// stopped (then it reports false and does not run fn). Checking stopped
// and adding to wg under mu keeps wg.Add from racing with Stop's wg.Wait.
func (f *Fanout) goTracked(fn func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	f.wg.Go(fn)
	return true
}

// Result tells which peers completed a session or a pin.
type Result struct {
	OK     []*Peer          // in the order given
	Failed map[string]error // by Peer.Name; each error names the peer
}

// mergeCancel returns a context canceled with ctx or, with cause
// ErrStopped, when stop ends.
func mergeCancel(ctx, stop context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	unhook := context.AfterFunc(stop, func() { cancel(ErrStopped) })
	return ctx, func() {
		unhook()
		cancel(nil)
	}
}
