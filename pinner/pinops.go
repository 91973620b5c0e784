package pinner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
)

// ResolveFactors applies the defaults to replication factors: 0 means
// IPFS Cluster's stock default, -1 (everywhere); a positive min with max
// -1 gets max = the number of peers (at least min), where IPFS Cluster
// would reject the pair (docs/rest-api.md, "Allocation").
func (p *Pinner) ResolveFactors(rmin, rmax int) (int, int) {
	if rmin == 0 {
		rmin = -1
	}
	if rmax == 0 {
		rmax = -1
	}
	if rmin > 0 && rmax == -1 {
		rmax = max(rmin, len(p.Peers()))
	}
	return rmin, rmax
}

// Allocate chooses the peers of a new pin or add with the one allocation
// policy (see the function Allocate), after checking the factors against
// the configured peers: a replication-min above the number of peers can
// never be met and is ErrBadRequest, fewer live peers than that is
// ErrNotEnoughPeers. In the embedded mode the one peer is Self.
// Factors must be resolved (ResolveFactors).
func (p *Pinner) Allocate(rmin, rmax int, user []string) ([]PeerState, error) {
	if err := CheckFactors(rmin, rmax); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	peers := p.Peers()
	if rmin > len(peers) {
		return nil, fmt.Errorf("%w: %w: replication-min %d is above the %d configured peers", ErrBadRequest, ErrBadFactors, rmin, len(peers))
	}
	states := make([]PeerState, len(peers))
	for i, t := range peers {
		states[i] = t.PeerState
	}
	return Allocate(states, rmin, rmax, user)
}

// Pin adds req to the pinset, or replaces the pin of req.Cid, and queues
// the pin on the allocated peers (asynchronously, as IPFS Cluster: the
// returned pin is committed, the peers pin it next; see Status). req holds
// the request's options with unresolved replication factors (0: default);
// Pin fills the rest. With req.PinUpdate set, the new pin takes the options
// and allocations of that existing pin (name and expiry may be given anew)
// and the peers pin it with kubo's pin/update. It returns the committed
// pin.
func (p *Pinner) Pin(ctx context.Context, req Pin) (Pin, error) {
	if !req.Cid.Defined() {
		return Pin{}, fmt.Errorf("cannot pin: %w: no CID", ErrBadRequest)
	}
	if req.Mode != ModeDirect {
		req.Mode = ModeRecursive
	}
	pin := req
	var from Pin
	if req.PinUpdate.Defined() {
		var err error
		from, err = p.cfg.Store.Get(ctx, req.PinUpdate.Cid)
		if errors.Is(err, ErrNotFound) {
			return Pin{}, fmt.Errorf("cannot pin %s: %w: pin-update source %s is not in the pinset", req.Cid, ErrBadRequest, req.PinUpdate)
		}
		if err != nil {
			return Pin{}, err
		}
		if from.Type != TypePin {
			return Pin{}, fmt.Errorf("cannot pin %s: %w: pin-update source %s is of type %s", req.Cid, ErrBadRequest, req.PinUpdate, from.Type)
		}
		pin = from
		pin.Cid, pin.PinUpdate = req.Cid, req.PinUpdate
		if req.Name != "" {
			pin.Name = req.Name
		}
		if !req.ExpireAt.IsZero() {
			pin.ExpireAt = req.ExpireAt
		}
		pin.UserAllocations = req.UserAllocations
	} else {
		pin.ReplicationFactorMin, pin.ReplicationFactorMax = p.ResolveFactors(req.ReplicationFactorMin, req.ReplicationFactorMax)
		peers, err := p.Allocate(pin.ReplicationFactorMin, pin.ReplicationFactorMax, req.UserAllocations)
		if err != nil {
			return Pin{}, fmt.Errorf("cannot pin %s: %w", req.Cid, err)
		}
		pin.Allocations = []string{}
		if pin.ReplicationFactorMin != -1 {
			for _, ps := range peers {
				pin.Allocations = append(pin.Allocations, ps.ID)
			}
		}
	}
	pin.Type = TypePin
	pin.MaxDepth = -1
	if pin.Mode == ModeDirect {
		pin.MaxDepth = 0
	}
	if pin.Metadata == nil {
		pin.Metadata = map[string]string{}
	}
	pin.Timestamp = time.Now()

	old, err := p.cfg.Store.Get(ctx, pin.Cid.Cid)
	hadOld := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Pin{}, err
	}
	if hadOld && old.Mode == ModeRecursive && pin.Mode == ModeDirect {
		return Pin{}, fmt.Errorf("cannot pin %s: it is pinned recursively and cannot be repinned as direct", pin.Cid)
	}
	if err := p.cfg.Store.Put(ctx, pin); err != nil {
		return Pin{}, err
	}
	recursive := pin.Mode == ModeRecursive
	for _, t := range p.Peers() {
		if t.ID == "" {
			continue
		}
		switch {
		case isAllocated(pin, t.ID):
			if tr := p.tracker(t.ID); tr != nil {
				tr.enqueue(pin.Cid.Cid, opPin, recursive, pin.Name, pin.PinUpdate.Cid)
			}
		case hadOld && isAllocated(old, t.ID):
			// Reallocated away from this peer.
			if tr := p.tracker(t.ID); tr != nil {
				tr.enqueue(pin.Cid.Cid, opUnpin, false, "", cid.Undef)
			}
		}
	}
	return pin, nil
}

// Unpin removes c from the pinset and queues the unpin on the peers that
// held it. It returns the pin as it was, or ErrNotFound.
func (p *Pinner) Unpin(ctx context.Context, c cid.Cid) (Pin, error) {
	old, err := p.cfg.Store.Get(ctx, c)
	if err != nil {
		return Pin{}, err
	}
	if old.Type != TypePin {
		return Pin{}, fmt.Errorf("cannot unpin %s: pins of type %s cannot be unpinned directly", c, old.Type)
	}
	if err := p.cfg.Store.Delete(ctx, c); err != nil {
		return Pin{}, err
	}
	for _, t := range p.Peers() {
		if t.ID == "" || !isAllocated(old, t.ID) {
			continue
		}
		if t.RPC == nil {
			// The embedded store: nothing to do until GC; forget any
			// failed pin of it.
			if tr := p.existingTracker(t.ID); tr != nil {
				tr.forget(c)
			}
			continue
		}
		if tr := p.tracker(t.ID); tr != nil {
			tr.enqueue(c, opUnpin, false, "", cid.Undef)
		}
	}
	return old, nil
}

// RecordAdded records the pins of one add, whose blocks are already
// durable in the embedded store or pinned on the allocated peers: one
// batch, one sync, no tracker work.
func (p *Pinner) RecordAdded(ctx context.Context, pins []Pin) error {
	return p.cfg.Store.PutBatch(ctx, pins)
}

// Get returns the pin of c, or ErrNotFound.
func (p *Pinner) Get(ctx context.Context, c cid.Cid) (Pin, error) {
	return p.cfg.Store.Get(ctx, c)
}

// List calls fn for every pin; see Store.List.
func (p *Pinner) List(ctx context.Context, fn func(Pin) error) error {
	return p.cfg.Store.List(ctx, fn)
}

// forget drops the item of c.
func (t *peerTracker) forget(c cid.Cid) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if it := t.items[c.KeyString()]; it != nil && !it.running {
		if it.retry != nil {
			it.retry.Stop()
		}
		delete(t.items, c.KeyString())
	}
}

// Resolve resolves an IPFS path (/ipfs/<cid>/sub/path, /ipns/name…) to
// the CID it names: with the first live kubo peer's resolve, or in the
// embedded mode with LocalResolve. A path that resolves to something
// mutable is an error, as in IPFS Cluster.
func (p *Pinner) Resolve(ctx context.Context, path string) (cid.Cid, error) {
	if p.Embedded() {
		if p.cfg.LocalResolve == nil || strings.HasPrefix(path, "/ipns/") {
			return cid.Undef, fmt.Errorf("cannot resolve %s: %w: the embedded store resolves only /ipfs/ paths", path, ErrBadRequest)
		}
		c, err := p.cfg.LocalResolve(ctx, path)
		if err != nil {
			return cid.Undef, fmt.Errorf("cannot resolve %s: %w", path, err)
		}
		return c, nil
	}
	var errs []string
	for _, t := range p.Peers() {
		if t.RPC == nil || !t.Alive {
			continue
		}
		res, err := t.RPC.Resolve(ctx, path)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		rest, ok := strings.CutPrefix(res, "/ipfs/")
		if !ok {
			return cid.Undef, fmt.Errorf("cannot resolve %s: it resolves to %s, which is mutable", path, res)
		}
		c, err := cid.Decode(strings.SplitN(rest, "/", 2)[0])
		if err != nil {
			return cid.Undef, fmt.Errorf("cannot resolve %s: kubo answered %s: %w", path, res, err)
		}
		return c, nil
	}
	if len(errs) == 0 {
		return cid.Undef, fmt.Errorf("cannot resolve %s: %w: no live peer", path, ErrNotEnoughPeers)
	}
	return cid.Undef, fmt.Errorf("cannot resolve %s: %s", path, strings.Join(errs, "; "))
}
