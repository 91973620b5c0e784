package restapi

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/clusterapi"
	"github.com/ingestd/ingestd/pinner"
)

// ClusterConfig puts ingestd in front of an IPFS Cluster (docs/cluster.md):
// adds stream their blocks straight to the cluster peers' kubo daemons and
// are pinned through the cluster; every other endpoint is the cluster's.
type ClusterConfig struct {
	// Client reaches the cluster's REST API. Required.
	Client *clusterapi.Client
	// Kubo maps a cluster peer ID to the URL of its kubo RPC API. Peers
	// not in it: the host of the peer's first IPFS address, port 5001.
	Kubo map[string]string
	// SyncInterval is how often the cluster's peer set is read. Default
	// 5s; 0 means the default.
	SyncInterval time.Duration
}

// defaultKuboPort is kubo's RPC API port, used for cluster peers whose
// kubo URL is not configured.
const defaultKuboPort = "5001"

// clusterTimeout bounds one call to the cluster made for an add.
const clusterTimeout = 30 * time.Second

// clusterBackend allocates adds from the cluster's peers and freespace
// metrics and pins them through the cluster. The Fanout's peers are the
// cluster peers' kubo daemons, named by cluster peer ID.
type clusterBackend struct {
	s   *Server
	cfg ClusterConfig
	f   *blockfanout.Fanout

	mu        sync.Mutex // guards localIPFS, synced
	localIPFS string     // kubo ID of the contacted cluster peer: local=true's peer
	synced    bool
}

func newClusterBackend(s *Server, cfg ClusterConfig) (*clusterBackend, error) {
	if cfg.Client == nil {
		return nil, errors.New("cannot front a cluster: no cluster client")
	}
	if s.cfg.Fanout == nil {
		return nil, errors.New("cannot front a cluster: no Fanout for its kubo daemons")
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 5 * time.Second
	}
	return &clusterBackend{s: s, cfg: cfg, f: s.cfg.Fanout}, nil
}

// kuboURL is where the kubo daemon of a cluster peer listens.
func (b *clusterBackend) kuboURL(p clusterapi.ID) string {
	if u := b.cfg.Kubo[p.ID]; u != "" {
		return u
	}
	for _, a := range p.IPFS.Addresses {
		parts := strings.Split(a, "/")
		if len(parts) < 3 {
			continue
		}
		switch parts[1] {
		case "ip4", "dns", "dns4", "dns6":
			return "http://" + parts[2] + ":" + defaultKuboPort
		case "ip6":
			return "http://[" + parts[2] + "]:" + defaultKuboPort
		}
	}
	return ""
}

// sync makes the Fanout's peers the cluster's: a kubo daemon per cluster
// peer, named by its cluster peer ID.
func (b *clusterBackend) sync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	id, err := b.cfg.Client.ID(ctx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.localIPFS = id.IPFS.ID
	b.mu.Unlock()
	peers, err := b.cfg.Client.Peers(ctx)
	if err != nil {
		return err
	}
	want := map[string]string{}
	for _, p := range peers {
		if p.ID == "" {
			continue
		}
		if u := b.kuboURL(p); u != "" {
			want[p.ID] = strings.TrimRight(u, "/")
		}
	}
	for _, st := range b.f.Peers() {
		if u, ok := want[st.Peer.Name]; !ok || u != st.Peer.URL {
			_, _ = b.f.RemovePeer(st.Peer.Name)
			continue
		}
		delete(want, st.Peer.Name)
	}
	var errs []error
	for id, u := range want {
		if _, err := b.f.AddPeer(ctx, blockfanout.PeerConfig{Name: id, URL: u}); err != nil {
			errs = append(errs, fmt.Errorf("cannot use the kubo daemon of cluster peer %s at %s: %w", id, u, err))
		}
	}
	b.mu.Lock()
	b.synced = true
	b.mu.Unlock()
	return errors.Join(errs...)
}

// run syncs every SyncInterval until ctx ends.
func (b *clusterBackend) run(ctx context.Context) {
	t := time.NewTicker(b.cfg.SyncInterval)
	defer t.Stop()
	for {
		if err := b.sync(ctx); err != nil && ctx.Err() == nil {
			b.s.logf("cannot read the cluster's peers: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *clusterBackend) resolveFactors(rmin, rmax int) (int, int) {
	if rmin == 0 {
		rmin = -1
	}
	if rmax == 0 {
		rmax = -1
	}
	if rmin > 0 && rmax == -1 {
		rmax = max(rmin, len(b.f.Peers()))
	}
	return rmin, rmax
}

// allocate reads the cluster's freespace metrics (a cluster that does not
// answer fails the add at once, before anything is sent) and allocates
// among the peers whose kubo answers and whose metric is valid, as IPFS
// Cluster's balanced allocator would.
func (b *clusterBackend) allocate(ctx context.Context, rmin, rmax int, user []string) ([]pinner.PeerState, error) {
	if err := pinner.CheckFactors(rmin, rmax); err != nil {
		return nil, fmt.Errorf("%w: %w", pinner.ErrBadRequest, err)
	}
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	b.mu.Lock()
	synced := b.synced
	b.mu.Unlock()
	if !synced {
		if err := b.sync(ctx); err != nil && errors.Is(err, clusterapi.ErrUnavailable) {
			return nil, err
		}
	}
	metrics, err := b.cfg.Client.Metrics(ctx, pinner.MetricFreeSpace)
	if err != nil {
		return nil, fmt.Errorf("cannot allocate peers: %w", err)
	}
	now := time.Now()
	free := map[string]clusterapi.Metric{}
	for _, m := range metrics {
		free[m.Peer] = m
	}
	var states []pinner.PeerState
	for _, st := range b.f.Peers() {
		ps := pinner.PeerState{ID: st.Peer.Name, Name: st.Peer.Name, Alive: st.Alive, Err: st.LastErr}
		m, ok := free[st.Peer.Name]
		switch {
		case !ok || m.Expired(now):
			ps.Alive, ps.Err = false, "no valid freespace metric in the cluster"
		case !st.Alive && ps.Err == "":
			ps.Err = "its kubo daemon at " + st.Peer.URL + " does not answer"
		}
		if ok {
			ps.FreeSpace = uint64(max(m.Weight, 0))
		}
		states = append(states, ps)
	}
	return pinner.Allocate(states, rmin, rmax, user)
}

func (b *clusterBackend) peerID(p *blockfanout.Peer) string { return p.Name }

// localPeer is the kubo daemon of the contacted cluster peer (the one
// its /id names as its IPFS daemon).
func (b *clusterBackend) localPeer() (*blockfanout.Peer, error) {
	b.mu.Lock()
	id := b.localIPFS
	b.mu.Unlock()
	for _, st := range b.f.Peers() {
		if id != "" && st.ID == id {
			return st.Peer, nil
		}
	}
	return nil, fmt.Errorf("cannot add with local=true: %w: the contacted cluster peer's IPFS daemon %q is not one ingestd can reach", pinner.ErrNotEnoughPeers, id)
}

// pinAdded pins each root through the cluster, allocated to the peers
// whose kubo daemons hold every block, with the request's options: the
// cluster commits the pin and its peers pin content they already hold.
func (b *clusterBackend) pinAdded(ctx context.Context, t *target, p *AddParams, roots []cid.Cid) ([]pinner.Pin, error) {
	q := url.Values{}
	po := &p.Pin
	q.Set("name", po.Name)
	q.Set("mode", po.Mode)
	// The cluster allocates the user allocations first, then whatever it
	// likes up to replication-max: capped at the peers that hold the
	// blocks, it allocates exactly those (a peer whose kubo died midway
	// is not allocated). Pins everywhere (-1) stay everywhere.
	rmin, rmax := po.ReplicationFactorMin, po.ReplicationFactorMax
	if r1, r2 := b.resolveFactors(rmin, rmax); r1 != -1 && r2 > len(t.pinners) {
		rmin, rmax = min(r1, len(t.pinners)), len(t.pinners)
	}
	q.Set("replication-min", strconv.Itoa(rmin))
	q.Set("replication-max", strconv.Itoa(rmax))
	q.Set("user-allocations", strings.Join(b.s.peerIDs(t.pinners), ","))
	if !po.ExpireAt.IsZero() {
		q.Set("expire-at", po.ExpireAt.Format(time.RFC3339Nano))
	}
	for k, v := range po.Metadata {
		q.Set("meta-"+k, v)
	}
	pins := make([]pinner.Pin, 0, len(roots))
	for _, root := range roots {
		cctx, cancel := context.WithTimeout(ctx, clusterTimeout)
		pin, err := b.cfg.Client.Pin(cctx, root, q)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cannot pin %s through the cluster: %w", root, err)
		}
		pins = append(pins, pin)
	}
	return pins, nil
}
