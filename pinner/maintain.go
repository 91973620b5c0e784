package pinner

import (
	"context"
	"time"

	cid "github.com/ipfs/go-cid"
)

// tick is how often the maintenance loop looks at the peers' liveness (for
// alerts) and pumps overflowing queues.
const tick = time.Second

// maintain is the one background loop: a reconciliation at start and every
// ReconcileInterval, a recover every RecoverInterval, expiry every
// ExpiryInterval, and every tick the queue pump and the liveness alerts.
// One loop, so that these never run concurrently with each other.
func (p *Pinner) maintain() {
	p.reconcile(p.ctx, true)
	now := time.Now()
	nextReconcile := now.Add(p.cfg.ReconcileInterval)
	nextRecover := now.Add(p.cfg.RecoverInterval)
	nextExpiry := now
	t := time.NewTicker(min(tick, p.cfg.ExpiryInterval, p.cfg.ReconcileInterval, p.cfg.MetricTTL))
	defer t.Stop()
	for {
		now := time.Now()
		if !now.Before(nextExpiry) {
			p.expire(p.ctx)
			nextExpiry = now.Add(p.cfg.ExpiryInterval)
		}
		if !now.Before(nextReconcile) {
			p.reconcile(p.ctx, false)
			nextReconcile = now.Add(p.cfg.ReconcileInterval)
		}
		if !now.Before(nextRecover) {
			if err := p.RecoverAll(p.ctx, false, func(GlobalPinInfo) error { return nil }); err != nil && p.ctx.Err() == nil {
				p.cfg.Logger.Printf("pinner: automatic recover: %v", err)
			}
			nextRecover = now.Add(p.cfg.RecoverInterval)
		}
		p.watchLiveness(now)
		p.mu.Lock()
		ts := make([]*peerTracker, 0, len(p.trackers))
		for _, tr := range p.trackers {
			ts = append(ts, tr)
		}
		p.mu.Unlock()
		for _, tr := range ts {
			tr.pump()
		}
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expire unpins every pin whose expire_at has passed.
func (p *Pinner) expire(ctx context.Context) {
	now := time.Now()
	var expired []cid.Cid
	err := p.cfg.Store.List(ctx, func(pin Pin) error {
		if !pin.ExpireAt.IsZero() && !pin.ExpireAt.After(now) {
			expired = append(expired, pin.Cid.Cid)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		p.cfg.Logger.Printf("pinner: cannot list pins for expiry: %v", err)
	}
	for _, c := range expired {
		if _, err := p.Unpin(ctx, c); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Printf("pinner: cannot unpin expired %s: %v", c, err)
		}
	}
}

// reconcile compares what each live kubo peer holds (pin/ls, recursive and
// direct) with the pins allocated to it. A pin it lacks is marked
// unexpectedly_unpinned, or, at start, queued again: after a restart
// ingestd cannot tell a pin removed behind its back from one it had not
// finished, and re-pinning converges either way. A stale
// unexpectedly_unpinned record of a pin it holds is dropped. Items with an
// operation queued or running are left alone.
//
// It holds one peer's pin set in memory at a time (multihash keys, about
// 80 bytes each), while the pinset is streamed from the store.
func (p *Pinner) reconcile(ctx context.Context, atStart bool) {
	for _, t := range p.Peers() {
		if t.RPC == nil || t.ID == "" || !t.Alive {
			continue
		}
		held := map[string]bool{}
		for _, typ := range []string{"recursive", "direct"} {
			err := t.RPC.PinLs(ctx, typ, func(k cid.Cid, _ string) error {
				held[string(k.Hash())] = true
				return nil
			})
			if err != nil {
				if ctx.Err() == nil {
					p.cfg.Logger.Printf("pinner: cannot reconcile peer %s: %v", t.PeerState, err)
				}
				held = nil
				break
			}
		}
		if held == nil {
			continue
		}
		tr := p.tracker(t.ID)
		if tr == nil {
			return
		}
		err := p.cfg.Store.List(ctx, func(pin Pin) error {
			if !isAllocated(pin, t.ID) {
				return nil
			}
			c := pin.Cid.Cid
			switch {
			case held[string(c.Hash())]:
				tr.markPresent(c)
			case atStart:
				if _, busy := tr.get(c); !busy {
					tr.enqueue(c, opPin, pin.Mode != ModeDirect, pin.Name, cid.Undef)
				}
			default:
				// The pin may have completed after pin/ls answered:
				// confirm before reporting it missing (rare, so cheap).
				cctx, cancel := context.WithTimeout(ctx, p.cfg.CheckTimeout)
				typ, err := t.RPC.PinLsCid(cctx, c)
				cancel()
				if err == nil && typ == "" {
					tr.markMissing(c)
				}
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			p.cfg.Logger.Printf("pinner: cannot reconcile peer %s: %v", t.PeerState, err)
		}
	}
}
