package restapi

import (
	"context"
	"fmt"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest/car"
	"github.com/ingestd/ingestd/localstore"
	"github.com/ingestd/ingestd/pinner"
)

// newPinner makes the pinner New runs when Config.Pinner is nil: over the
// Fanout's kubo peers, or over the embedded store.
func (s *Server) newPinner() (*pinner.Pinner, error) {
	cfg := pinner.Config{Store: s.cfg.Pins, Self: pinner.PeerState{ID: s.cfg.PeerID, Name: s.cfg.PeerName}}
	if f := s.cfg.Fanout; f != nil {
		cfg.Targets = FanoutTargets(f)
	} else {
		cfg.LocalCheck = StoreCheck(s.cfg.Store.Get)
		cfg.LocalResolve = StoreResolve(s.cfg.Store.Get)
		store := s.cfg.Store
		cfg.LocalFreeSpace = func() uint64 {
			n, _ := store.FreeSpace()
			return n
		}
	}
	p, err := pinner.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot create server: %w", err)
	}
	return p, nil
}

// StoreCheck is the pinner's LocalCheck over the embedded store: a pin is
// pinned once every block of its DAG is there.
func StoreCheck(get func(ctx context.Context, c cid.Cid) ([]byte, error)) func(ctx context.Context, c cid.Cid, recursive bool) error {
	return func(ctx context.Context, c cid.Cid, recursive bool) error {
		if err := car.CheckStored(ctx, c, get, recursive); err != nil {
			return fmt.Errorf("the DAG is not complete in the embedded store (ingestd fetches nothing; add it with /add): %w", err)
		}
		return nil
	}
}

// FanoutTargets is the pinner's Targets over the Fanout's kubo peers.
func FanoutTargets(f *blockfanout.Fanout) func() []pinner.Target {
	return func() []pinner.Target {
		sts := f.Peers()
		out := make([]pinner.Target, len(sts))
		for i, st := range sts {
			out[i] = pinner.Target{
				PeerState: pinner.PeerState{ID: st.ID, Name: st.Peer.Name, Alive: st.Alive, FreeSpace: st.FreeSpace, Err: st.LastErr},
				Addresses: st.Addresses,
				RPC:       st.Peer.RPC(),
			}
		}
		return out
	}
}

// collect is the embedded store's garbage collection for POST /ipfs/gc:
// the pinset is the set of live roots.
func (s *Server) collect(ctx context.Context) ([]cid.Cid, error) {
	roots := func(yield func(localstore.Root) error) error {
		return s.pinner.List(ctx, func(p pinner.Pin) error {
			return yield(localstore.Root{Cid: p.Cid.Cid, Recursive: p.Mode != pinner.ModeDirect})
		})
	}
	removed, err := s.cfg.Store.Collect(ctx, roots, car.Links)
	if err == nil {
		s.cfg.Metrics.Collected(len(removed))
	}
	return removed, err
}

// holdStore keeps the embedded store's garbage collection from running
// until the returned function is called (localstore.Store.Hold); with kubo
// peers, the store holds no blocks of adds and pins, and nothing is held.
func (s *Server) holdStore() func() {
	if s.cfg.Fanout != nil {
		return func() {}
	}
	return s.cfg.Store.Hold()
}

// collectEvery runs the embedded store's collection every GCInterval until
// shutdown.
func (s *Server) collectEvery() {
	t := time.NewTicker(s.cfg.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.baseCtx, gcTimeout)
		removed, err := s.collect(ctx)
		cancel()
		if err != nil && s.baseCtx.Err() == nil {
			s.logf("garbage collection: %v", err)
			continue
		}
		s.events().Info("gc", "removed", len(removed))
	}
}
