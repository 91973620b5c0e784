package pinner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
)

// peersFor returns the peers a status covers: all targets, or with local
// the first one (the "contacted peer": ingestd itself in the embedded
// mode, the first configured kubo daemon otherwise). Peers whose ID is not
// known yet are left out: clients reject an empty peer ID.
func (p *Pinner) peersFor(local bool) []Target {
	var out []Target
	for _, t := range p.Peers() {
		if t.ID == "" {
			continue
		}
		out = append(out, t)
		if local {
			break
		}
	}
	return out
}

// info is the tracker's view of c on t, without asking t: an item if
// there is one, else what the pinset implies.
func (p *Pinner) info(t Target, pin *Pin, c cid.Cid) PinInfo {
	pi := PinInfo{PeerName: t.Name, Timestamp: time.Now()}
	if t.RPC != nil {
		pi.IPFSPeerID, pi.IPFSPeerAddresses = t.ID, t.Addresses
	}
	if tr := p.existingTracker(t.ID); tr != nil {
		if it, ok := tr.get(c); ok {
			pi.Status, pi.Error, pi.Timestamp, pi.AttemptCount = it.status, it.err, it.ts, it.attempts
			return pi
		}
	}
	switch {
	case pin == nil:
		pi.Status = StatusUnpinned
	case !isAllocated(*pin, t.ID):
		pi.Status = StatusRemote
	case !t.Alive:
		pi.Status, pi.Error = StatusClusterError, t.Err
	default:
		pi.Status = StatusPinned
		pi.Timestamp = pin.Timestamp
	}
	return pi
}

// global wraps per-peer infos as a GlobalPinInfo of c.
func global(c cid.Cid, pin *Pin, infos map[string]PinInfo) GlobalPinInfo {
	g := GlobalPinInfo{Cid: CID{c}, Allocations: []string{}, Origins: []string{}, Created: time.Now(), PeerMap: infos}
	if pin != nil {
		g.Name, g.Created, g.Metadata = pin.Name, pin.Timestamp, pin.Metadata
		if pin.Allocations != nil {
			g.Allocations = pin.Allocations
		}
		if pin.Origins != nil {
			g.Origins = pin.Origins
		}
	}
	return g
}

// Status returns the status of c on every peer (only the first with
// local). Each allocated peer that is not busy with c is asked live
// (kubo's pin/ls, CheckTimeout each, in parallel), as IPFS Cluster does for
// one CID: a pin removed behind ingestd's back shows at once as
// unexpectedly_unpinned, an unreachable peer as cluster_error. A CID not in
// the pinset is not an error: every peer reports unpinned.
func (p *Pinner) Status(ctx context.Context, c cid.Cid, local bool) (GlobalPinInfo, error) {
	pin, err := p.lookup(ctx, c)
	if err != nil {
		return GlobalPinInfo{}, err
	}
	peers := p.peersFor(local)
	infos := make([]PinInfo, len(peers))
	var wg sync.WaitGroup
	for i, t := range peers {
		infos[i] = p.info(t, pin, c)
		if pin == nil || infos[i].Status != StatusPinned || t.RPC == nil {
			continue
		}
		wg.Go(func() { infos[i] = p.check(ctx, t, *pin, infos[i]) })
	}
	wg.Wait()
	m := make(map[string]PinInfo, len(peers))
	for i, t := range peers {
		m[t.ID] = infos[i]
	}
	return global(c, pin, m), nil
}

// check asks t whether it holds pin, and records a missing pin.
func (p *Pinner) check(ctx context.Context, t Target, pin Pin, pi PinInfo) PinInfo {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CheckTimeout)
	defer cancel()
	typ, err := t.RPC.PinLsCid(ctx, pin.Cid.Cid)
	pi.Timestamp = time.Now()
	switch {
	case err != nil:
		pi.Status, pi.Error = StatusClusterError, err.Error()
	case typ == "recursive" || (typ != "" && pin.Mode == ModeDirect):
		if tr := p.existingTracker(t.ID); tr != nil {
			tr.markPresent(pin.Cid.Cid)
		}
	default:
		if tr := p.tracker(t.ID); tr != nil {
			tr.markMissing(pin.Cid.Cid)
		}
		pi.Status, pi.Error = StatusUnexpectedlyUnpinned, errUnexpectedlyUnpinned
	}
	return pi
}

// lookup returns the pin of c, nil if it is not pinned.
func (p *Pinner) lookup(ctx context.Context, c cid.Cid) (*Pin, error) {
	pin, err := p.cfg.Store.Get(ctx, c)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &pin, nil
}

// StatusAll streams the status of every pin (then of every unpin still in
// flight) from the tracker, without asking the peers (reconciliation keeps
// the tracker honest), reading the pinset one pin at a time. With a filter,
// each GlobalPinInfo holds only the peers whose status matches, and pins
// with none are skipped.
func (p *Pinner) StatusAll(ctx context.Context, f Filter, local bool, fn func(GlobalPinInfo) error) error {
	peers := p.peersFor(local)
	emit := func(c cid.Cid, pin *Pin) error {
		m := make(map[string]PinInfo, len(peers))
		for _, t := range peers {
			if pi := p.info(t, pin, c); f.Match(pi.Status) {
				m[t.ID] = pi
			}
		}
		if len(m) == 0 {
			return nil
		}
		return fn(global(c, pin, m))
	}
	err := p.cfg.Store.List(ctx, func(pin Pin) error { return emit(pin.Cid.Cid, &pin) })
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, t := range peers {
		tr := p.existingTracker(t.ID)
		if tr == nil {
			continue
		}
		for _, c := range tr.unpinsInFlight() {
			if seen[c.KeyString()] {
				continue
			}
			seen[c.KeyString()] = true
			pin, err := p.lookup(ctx, c)
			if err != nil {
				return err
			}
			if pin != nil {
				continue // pinned again: listed above
			}
			if err := emit(c, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// Recover queues again the failed operations on c (pin_error and
// unexpectedly_unpinned: pin; unpin_error: unpin), after a live status,
// and returns the status after queueing. In the embedded mode a pinned CID
// is checked again too: its DAG is read from the store, so that a block
// lost or corrupted since shows as pin_error. With local it acts on the first
// peer only and a CID not in the pinset is ErrNotFound (IPFS Cluster's
// 404); without, it is every peer unpinned.
func (p *Pinner) Recover(ctx context.Context, c cid.Cid, local bool) (GlobalPinInfo, error) {
	if local {
		if _, err := p.cfg.Store.Get(ctx, c); err != nil {
			return GlobalPinInfo{}, err
		}
	}
	g, err := p.Status(ctx, c, local)
	if err != nil {
		return GlobalPinInfo{}, err
	}
	if p.recheckEmbedded(ctx, c, g) {
		// Just checked: retrying now would only fail again.
		return p.statusNow(ctx, c, local)
	}
	if p.requeue(ctx, c, g) == 0 {
		return g, nil
	}
	return p.statusNow(ctx, c, local)
}

// recheckEmbedded reads a pinned DAG of the embedded store again: status
// has no cheap live check there (it would read the whole DAG every time),
// so recover is where a block lost or corrupted since the pin shows, as
// pin_error with the store's reason. It reports whether it found one.
func (p *Pinner) recheckEmbedded(ctx context.Context, c cid.Cid, g GlobalPinInfo) bool {
	self := p.cfg.Self.ID
	if !p.Embedded() || p.cfg.LocalCheck == nil || g.PeerMap[self].Status != StatusPinned {
		return false
	}
	pin, err := p.lookup(ctx, c)
	if err != nil || pin == nil {
		return false
	}
	err = p.cfg.LocalCheck(ctx, c, pin.Mode != ModeDirect)
	if err == nil || ctx.Err() != nil {
		return false
	}
	if tr := p.tracker(self); tr != nil {
		tr.fail(c, err)
	}
	return true
}

// statusNow is Status without the live checks.
func (p *Pinner) statusNow(ctx context.Context, c cid.Cid, local bool) (GlobalPinInfo, error) {
	pin, err := p.lookup(ctx, c)
	if err != nil {
		return GlobalPinInfo{}, err
	}
	m := map[string]PinInfo{}
	for _, t := range p.peersFor(local) {
		m[t.ID] = p.info(t, pin, c)
	}
	return global(c, pin, m), nil
}

// requeue queues the failed operations that g shows and counts them.
func (p *Pinner) requeue(ctx context.Context, c cid.Cid, g GlobalPinInfo) int {
	pin, err := p.lookup(ctx, c)
	if err != nil {
		return 0
	}
	n := 0
	for id, pi := range g.PeerMap {
		tr := p.tracker(id)
		if tr == nil {
			continue
		}
		switch pi.Status {
		case StatusPinError, StatusUnexpectedlyUnpinned:
			if pin == nil {
				tr.forget(c)
				continue
			}
			tr.enqueue(c, opPin, pin.Mode != ModeDirect, pin.Name, cid.Undef)
			n++
		case StatusUnpinError:
			if pin != nil && isAllocated(*pin, id) {
				tr.forget(c)
				continue
			}
			tr.enqueue(c, opUnpin, false, "", cid.Undef)
			n++
		}
	}
	return n
}

// RecoverAll queues again every failed operation the trackers know of and
// streams the status of each CID it queued (nothing when nothing needed
// it).
func (p *Pinner) RecoverAll(ctx context.Context, local bool, fn func(GlobalPinInfo) error) error {
	seen := map[string]bool{}
	for _, t := range p.peersFor(local) {
		tr := p.existingTracker(t.ID)
		if tr == nil {
			continue
		}
		for _, c := range tr.failed() {
			if seen[c.KeyString()] {
				continue
			}
			seen[c.KeyString()] = true
			g, err := p.statusNow(ctx, c, local)
			if err != nil {
				return err
			}
			if p.requeue(ctx, c, g) == 0 {
				continue
			}
			if g, err = p.statusNow(ctx, c, local); err != nil {
				return err
			}
			if err := fn(g); err != nil {
				return fmt.Errorf("cannot report recovered %s: %w", c, err)
			}
		}
	}
	return nil
}
