package restapi

import (
	"context"
	"fmt"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/pinner"
)

// backend is where the pins of adds go, and who the peers of an add are:
// ingestd's own pinner (the embedded store, or kubo peers it pins on), or
// an IPFS Cluster that ingestd runs in front of (clusterBackend). It is
// chosen at start; /add does not know which one it talks to.
type backend interface {
	// resolveFactors applies the defaults to replication factors.
	resolveFactors(rmin, rmax int) (int, int)
	// allocate chooses the peers of an add, by the one policy
	// (pinner.Allocate); with a Fanout, each PeerState's Name is the name
	// of its Fanout peer.
	allocate(ctx context.Context, rmin, rmax int, user []string) ([]pinner.PeerState, error)
	// peerID is the ID under which a Fanout peer appears in allocations.
	peerID(p *blockfanout.Peer) string
	// localPeer is the Fanout peer that local=true sends the blocks to.
	localPeer() (*blockfanout.Peer, error)
	// pinAdded pins the roots of a finished add, whose blocks are durable
	// (the embedded store) or acknowledged by t's holders, and returns
	// the committed pins in the order of roots.
	pinAdded(ctx context.Context, t *target, p *AddParams, roots []cid.Cid) ([]pinner.Pin, error)
}

// localBackend is ingestd's own pinner.
type localBackend struct {
	s *Server
}

func (b localBackend) resolveFactors(rmin, rmax int) (int, int) {
	return b.s.pinner.ResolveFactors(rmin, rmax)
}

func (b localBackend) allocate(_ context.Context, rmin, rmax int, user []string) ([]pinner.PeerState, error) {
	return b.s.pinner.Allocate(rmin, rmax, user)
}

func (b localBackend) peerID(p *blockfanout.Peer) string { return p.ID() }

func (b localBackend) localPeer() (*blockfanout.Peer, error) {
	peers := b.s.cfg.Fanout.Peers()
	if len(peers) == 0 {
		return nil, fmt.Errorf("cannot add with local=true: %w: no peers", pinner.ErrNotEnoughPeers)
	}
	return peers[0].Peer, nil
}

// pinAdded pins on the kubo peers (with a Fanout), then records the pins
// in one batch: a pin is recorded only once every block of its DAG is
// durable and, with peers, pinned on them.
func (b localBackend) pinAdded(ctx context.Context, t *target, p *AddParams, roots []cid.Cid) ([]pinner.Pin, error) {
	s := b.s
	if err := s.pinOnPeers(ctx, t, p, roots); err != nil {
		return nil, err
	}
	allocs := s.allocations(t)
	pins := make([]pinner.Pin, len(roots))
	for i, root := range roots {
		pins[i] = s.newPin(root, &p.Pin, allocs)
	}
	if err := s.pinner.RecordAdded(ctx, pins); err != nil {
		return nil, fmt.Errorf("cannot record the pins of %d roots: %w", len(roots), err)
	}
	return pins, nil
}
