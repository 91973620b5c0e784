package restapi

import (
	"context"
	"fmt"
	"slices"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest"
	"github.com/ingestd/ingestd/pinner"
)

// target is where one add's blocks go and who pins them: the embedded
// store, or a set of kubo peers through blockfanout (spec §4.6–4.8).
type target struct {
	sink ingest.Sink
	// holders are the peers that receive the blocks; pinners the peers
	// whose pin is requested (the same, unless local=true).
	holders, pinners []*blockfanout.Peer
	session          *blockfanout.Session
	// minOK holders must acknowledge every block, and pinMin pinners must
	// pin: replication-min (all allocated peers for -1); with local=true
	// the one holder must.
	minOK, pinMin int
	local         bool // local=true: holders is the first peer only
	// client and query say who asked for the add, for its log line.
	client, query string
	// committed are the allocations of the last root's committed pin,
	// when the backend reports any: what the root's output carries.
	committed []string
}

// allocations lists the IDs reported in AddedOutput.allocations: the
// peers allocated to pin the content (this peer for the embedded store).
// With local=true that is not only the one peer that receives the blocks
// (spec §4.6).
func (s *Server) allocations(t *target) []string {
	if t.session == nil {
		return []string{s.cfg.PeerID}
	}
	return s.peerIDs(t.pinners)
}

// openTarget chooses the targets of an add. Replication factors follow IPFS
// Cluster: 0 means the default, -1 (every live peer); the add needs
// replication-min peers to acknowledge every block (all allocated ones for
// -1). With local=true the blocks go only to the first configured peer (the
// "local" IPFS daemon) and the allocated peers fetch them when pinning.
func (s *Server) openTarget(ctx context.Context, p *AddParams) (*target, error) {
	if s.cfg.Fanout == nil || p.OnlyHash {
		var sink ingest.Sink = s.cfg.Store
		if p.OnlyHash {
			sink = ingest.DiscardSink{}
		}
		return &target{sink: sink}, nil
	}
	rmin, rmax := s.backend.resolveFactors(p.Pin.ReplicationFactorMin, p.Pin.ReplicationFactorMax)
	peers, err := s.allocatePeers(ctx, rmin, rmax, p.Pin.UserAllocations)
	if err != nil {
		return nil, err
	}
	t := &target{holders: peers, pinners: peers, minOK: rmin}
	if rmin == -1 {
		t.minOK = len(peers)
	}
	t.pinMin = t.minOK
	if p.Local {
		local, err := s.backend.localPeer()
		if err != nil {
			return nil, err
		}
		t.holders, t.minOK, t.local = []*blockfanout.Peer{local}, 1, true
		// As IPFS Cluster (spec §4.6): without user allocations, the local
		// peer takes the last allocation if it was not allocated, so that
		// the copy it already holds is one of the pins.
		if len(p.Pin.UserAllocations) == 0 && !slices.Contains(peers, local) {
			t.pinners = append(slices.Clone(peers[:len(peers)-1]), local)
		}
	}
	t.session = s.cfg.Fanout.NewSession(ctx, t.holders, t.minOK)
	t.sink = t.session
	return t, nil
}

// finish waits for every block to be acknowledged (a failed add still
// closes its session) and, on success, keeps the peers that acknowledged.
func (t *target) finish(ctx context.Context, addErr error) error {
	if t.session == nil {
		return addErr
	}
	res, err := t.session.Close(ctx)
	if addErr != nil {
		return addErr
	}
	if err != nil {
		return err
	}
	if !t.local {
		t.pinners = res.OK
	}
	t.holders = res.OK
	return nil
}

// pinOnPeers pins every root on the pinning peers. With local=true they
// must fetch the blocks from the local peer first, so the peers are
// connected to each other before.
func (s *Server) pinOnPeers(ctx context.Context, t *target, p *AddParams, roots []cid.Cid) error {
	if t.session == nil {
		return nil
	}
	if p.Local {
		if err := s.cfg.Fanout.ConnectAll(ctx); err != nil {
			return fmt.Errorf("cannot connect peers for local=true: %w", err)
		}
	}
	for _, root := range roots {
		res, err := s.cfg.Fanout.Pin(ctx, t.pinners, root, p.Pin.Name, p.Pin.Mode != pinner.ModeDirect)
		if err != nil && len(res.OK) < t.pinMin {
			return err
		}
		t.pinners = res.OK
	}
	return nil
}

// allocatePeers applies the backend's allocation to the Fanout's peers.
func (s *Server) allocatePeers(ctx context.Context, rmin, rmax int, user []string) ([]*blockfanout.Peer, error) {
	chosen, err := s.backend.allocate(ctx, rmin, rmax, user)
	if err != nil {
		return nil, err
	}
	byName := map[string]*blockfanout.Peer{}
	for _, st := range s.cfg.Fanout.Peers() {
		byName[st.Peer.Name] = st.Peer
	}
	out := make([]*blockfanout.Peer, 0, len(chosen))
	for _, c := range chosen {
		if p := byName[c.Name]; p != nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("cannot allocate peers: %w: the allocated peers were removed", pinner.ErrNotEnoughPeers)
	}
	return out, nil
}
