package blockfanout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ingestd/ingestd/kuborpc"
	"github.com/ingestd/ingestd/pinner"
)

// minCheckTimeout is the least time a liveness check gets, so that a short
// CheckInterval (tests) does not fail a busy daemon.
const minCheckTimeout = 5 * time.Second

// Peer is one kubo daemon of a Fanout. Name and URL never change; the kubo
// peer ID is learned from /api/v0/id (see ID). A Peer stays usable after
// RemovePeer: sessions and pins given it keep sending to it.
type Peer struct {
	Name string
	URL  string // without a trailing slash

	rpc *kuborpc.Client
	id  atomic.Pointer[string]
	// noImport is set once p's dag/import was refused (403, 404, 405,
	// 501, or an answer without stats): p gets block/put from then on.
	noImport atomic.Bool
	// imported is set once one of p's dag/imports answered with matching
	// stats: only then does a session send p two segments at once, so that
	// a peer that refuses dag/import is sent one refused request, not two.
	imported atomic.Bool

	// Guarded by Fanout.mu.
	checked   bool
	alive     bool
	freeSpace uint64
	addrs     []string
	lastErr   string
	lastCheck time.Time
}

// ID returns the kubo peer ID of p, "" until p has answered /api/v0/id.
func (p *Peer) ID() string {
	if id := p.id.Load(); id != nil {
		return *id
	}
	return ""
}

// Wire names how sessions send blocks to p: "dag/import" (CAR segments,
// the default) or "block/put" (Config.BlockPut, or p refused dag/import).
func (p *Peer) Wire() string {
	if p.noImport.Load() {
		return "block/put"
	}
	return "dag/import"
}

// RPC returns the client of p's kubo RPC API, which sends with the
// Fanout's Config.Client.
func (p *Peer) RPC() *kuborpc.Client { return p.rpc }

// String returns "name (url, id X)", the form errors use.
func (p *Peer) String() string {
	id := p.ID()
	if id == "" {
		id = "unknown"
	}
	return fmt.Sprintf("%s (%s, id %s)", p.Name, p.URL, id)
}

// PeerStatus is a snapshot of a peer's state, from the last check.
type PeerStatus struct {
	Peer      *Peer
	ID        string   // kubo peer ID, "" until known
	Alive     bool     // the last /api/v0/id check succeeded
	FreeSpace uint64   // StorageMax - RepoSize from the last repo/stat
	Addresses []string // swarm multiaddrs from /api/v0/id
	LastErr   string   // the last error seen with this peer, "" if none
	LastCheck time.Time
}

// newPeer validates pc and makes its Peer; its name defaults to its URL.
func (f *Fanout) newPeer(pc PeerConfig) (*Peer, error) {
	rpc, err := kuborpc.New(pc.URL, f.cfg.client)
	if err != nil {
		return nil, err
	}
	name := pc.Name
	if name == "" {
		name = rpc.URL()
	}
	p := &Peer{Name: name, URL: rpc.URL(), rpc: rpc}
	p.noImport.Store(f.cfg.blockPut)
	return p, nil
}

// conflict reports whether p has the name or URL of one of peers.
func conflict(peers []*Peer, p *Peer) error {
	for _, q := range peers {
		switch {
		case q.Name == p.Name:
			return fmt.Errorf("peer name %q is already in use", p.Name)
		case q.URL == p.URL:
			return fmt.Errorf("peer URL %q is already in use (by %s)", p.URL, q.Name)
		}
	}
	return nil
}

// AddPeer adds a kubo daemon to the Fanout, validated as by New (and
// refused if its name or URL is in use), and checks it once before it
// joins, so that its kubo peer ID is known if it answered; later checks
// include it. A peer that does not answer is added anyway and marked down,
// as New does: the returned status says so (Alive false, LastErr). AddPeer
// fails if ctx ends before the check did, or once f is stopped.
func (f *Fanout) AddPeer(ctx context.Context, pc PeerConfig) (PeerStatus, error) {
	p, err := f.newPeer(pc)
	if err != nil {
		return PeerStatus{}, fmt.Errorf("cannot add peer %q: %w", cmp.Or(pc.Name, pc.URL), err)
	}
	if err := f.admit(p, false); err != nil {
		return PeerStatus{}, err
	}
	ctx, cancel := mergeCancel(ctx, f.stopCtx)
	defer cancel()
	f.checkPeer(ctx, p)
	if ctx.Err() != nil {
		return PeerStatus{}, fmt.Errorf("cannot add peer %s: %w", p, context.Cause(ctx))
	}
	// Checked again: another AddPeer may have taken the name meanwhile.
	if err := f.admit(p, true); err != nil {
		return PeerStatus{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return p.statusLocked(), nil
}

// admit fails if f is stopped or p conflicts with a peer of f; otherwise
// it adds p if add is set.
func (f *Fanout) admit(p *Peer, add bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := conflict(f.peers, p)
	if f.stopped {
		err = ErrStopped
	}
	if err != nil {
		return fmt.Errorf("cannot add peer %s: %w", p, err)
	}
	if add {
		f.peers = append(slices.Clip(f.peers), p) // a new array: readers keep the old one
	}
	return nil
}

// RemovePeer removes the peer named idOrName (its Name, else its kubo peer
// ID) from f and returns its last status. It is no longer returned by
// Peers and Allocate nor checked; sessions and pins already given it keep
// using it. It fails with ErrUnknownPeer if no peer has that name or ID.
func (f *Fanout) RemovePeer(idOrName string) (PeerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.peers, func(p *Peer) bool { return p.Name == idOrName })
	if i < 0 && idOrName != "" {
		i = slices.IndexFunc(f.peers, func(p *Peer) bool { return p.ID() == idOrName })
	}
	if i < 0 {
		return PeerStatus{}, fmt.Errorf("cannot remove peer %q: %w", idOrName, ErrUnknownPeer)
	}
	st := f.peers[i].statusLocked()
	f.peers = slices.Delete(slices.Clone(f.peers), i, i+1) // a new array: readers keep the old one
	return st, nil
}

// peerList returns the current peers. The slice is never modified.
func (f *Fanout) peerList() []*Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers
}

// Peers returns the state of every peer, in the order they were
// configured or added.
func (f *Fanout) Peers() []PeerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]PeerStatus, len(f.peers))
	for i, p := range f.peers {
		out[i] = p.statusLocked()
	}
	return out
}

// statusLocked returns p's status; f.mu must be held.
func (p *Peer) statusLocked() PeerStatus {
	return PeerStatus{
		Peer:      p,
		ID:        p.ID(),
		Alive:     p.alive,
		FreeSpace: p.freeSpace,
		Addresses: slices.Clone(p.addrs),
		LastErr:   p.lastErr,
		LastCheck: p.lastCheck,
	}
}

func (f *Fanout) checkLoop() {
	t := time.NewTicker(f.cfg.checkInterval)
	defer t.Stop()
	for {
		select {
		case <-f.stopCtx.Done():
			return
		case <-t.C:
			f.checkAll(f.stopCtx)
		}
	}
}

// checkAll checks every peer concurrently and returns when all are done.
func (f *Fanout) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range f.peerList() {
		wg.Go(func() { f.checkPeer(ctx, p) })
	}
	wg.Wait()
}

// checkPeer asks p for /api/v0/id and /api/v0/repo/stat and records the
// outcome.
func (f *Fanout) checkPeer(ctx context.Context, p *Peer) {
	ctx, cancel := context.WithTimeout(ctx, max(f.cfg.checkInterval, minCheckTimeout))
	defer cancel()
	id, err := p.rpc.ID(ctx)
	var stat kuborpc.RepoStat
	if err == nil {
		stat, err = p.rpc.RepoStat(ctx)
	}
	if ctx.Err() != nil && f.stopCtx.Err() != nil {
		return // stopping: keep the last real outcome
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	p.checked = true
	p.lastCheck = time.Now()
	if err != nil {
		p.alive = false
		p.lastErr = err.Error()
		return
	}
	if id.ID != p.ID() {
		p.id.Store(&id.ID)
	}
	p.alive = true
	p.addrs = id.Addresses
	p.freeSpace = 0
	if stat.StorageMax > stat.RepoSize {
		p.freeSpace = stat.StorageMax - stat.RepoSize
	}
	p.lastErr = ""
}

// recordErr remembers err as p's last error (shown by Peers).
func (f *Fanout) recordErr(p *Peer, err error) {
	f.mu.Lock()
	p.lastErr = err.Error()
	f.mu.Unlock()
}

// knownDown reports whether the last check found p down, with its error.
func (f *Fanout) knownDown(p *Peer) (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return p.checked && !p.alive, p.lastErr
}

// Allocate picks the peers an add goes to with ingestd's one allocation
// policy, pinner.Allocate (IPFS Cluster's balanced allocator, spec §4.6),
// over the peers' last checks: user allocations (kubo peer ID or Name)
// first, then the most free space. It fails with ErrNotEnoughPeers when
// fewer than rmin peers are live.
func (f *Fanout) Allocate(rmin, rmax int, user []string) ([]*Peer, error) {
	f.mu.Lock()
	peers := slices.Clone(f.peers)
	states := make([]pinner.PeerState, len(peers))
	for i, p := range peers {
		states[i] = pinner.PeerState{ID: p.ID(), Name: p.Name, Alive: p.alive, FreeSpace: p.freeSpace, Err: p.lastErr}
		if !p.checked {
			states[i].Err = "not checked yet"
		}
	}
	f.mu.Unlock()
	chosen, err := pinner.Allocate(states, rmin, rmax, user)
	if err != nil {
		return nil, err
	}
	out := make([]*Peer, 0, len(chosen))
	for _, c := range chosen {
		for i, st := range states {
			if st.Name == c.Name {
				out = append(out, peers[i])
				break
			}
		}
	}
	return out, nil
}

// ConnectAll connects every live peer to every other one over the IPFS
// swarm (kubo swarm/connect with the addresses the other peer reported in
// /api/v0/id, loopback included), so that peers can fetch blocks from each
// other over bitswap: what IPFS Cluster relies on for local=true adds. It
// re-checks all peers first, makes one call per pair, and joins the errors
// of the pairs that failed.
func (f *Fanout) ConnectAll(ctx context.Context) error {
	f.checkAll(ctx)
	type target struct {
		p     *Peer
		addrs []string
	}
	var live []target
	for _, st := range f.Peers() {
		if st.Alive && st.ID != "" && len(st.Addresses) > 0 {
			addrs := make([]string, len(st.Addresses))
			for i, a := range st.Addresses {
				if !strings.Contains(a, "/p2p/") {
					a += "/p2p/" + st.ID
				}
				addrs[i] = a
			}
			live = append(live, target{st.Peer, addrs})
		}
	}
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for i, from := range live {
		wg.Go(func() {
			var perPeer []error
			for _, to := range live[i+1:] {
				if err := from.p.rpc.SwarmConnect(ctx, to.addrs); err != nil {
					perPeer = append(perPeer, fmt.Errorf("cannot connect peer %s to %s: %w", from.p, to.p, err))
				}
			}
			errs[i] = errors.Join(perPeer...)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
