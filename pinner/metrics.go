package pinner

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
)

// Metric names (IPFS Cluster's informers).
const (
	MetricPing      = "ping"
	MetricFreeSpace = "freespace"
	MetricPinQueue  = "pinqueue"
)

// metricTTL is the default of Config.MetricTTL: how long a metric stays
// valid; a peer whose ping is older
// raises an alert (IPFS Cluster's monitor does the same with its TTLs).
const metricTTL = 30 * time.Second

// maxAlerts bounds the alerts kept for /health/alerts, newest first.
const maxAlerts = 256

// Metric is IPFS Cluster's Metric object: times are UnixNano integers,
// the value a string.
type Metric struct {
	Name          string `json:"name"`
	Peer          string `json:"peer"`
	Value         string `json:"value"`
	Expire        int64  `json:"expire"`
	Valid         bool   `json:"valid"`
	Weight        int64  `json:"weight"`
	Partitionable bool   `json:"partitionable"`
	ReceivedAt    int64  `json:"received_at"`
}

// Alert is a Metric that expired, with when it did.
type Alert struct {
	Metric
	TriggeredAt time.Time `json:"triggered_at"`
}

// MetricNames lists the metrics every peer reports.
func (p *Pinner) MetricNames() []string {
	return []string{MetricPing, MetricFreeSpace, MetricPinQueue}
}

// Metrics returns the latest valid metric of that name for every peer: a
// peer that is down has no valid ping or freespace. An unknown name gives
// an empty list.
func (p *Pinner) Metrics(name string) []Metric {
	out := []Metric{}
	now := time.Now()
	for _, t := range p.peersFor(false) {
		m := Metric{Name: name, Peer: t.ID, Valid: true, ReceivedAt: now.UnixNano(), Expire: now.Add(p.cfg.MetricTTL).UnixNano()}
		switch name {
		case MetricPing:
			if !t.Alive {
				continue
			}
			v, _ := json.Marshal(struct {
				PeerName      string   `json:"peer_name"`
				IPFSID        string   `json:"ipfs_id"`
				IPFSAddresses []string `json:"ipfs_addresses"`
			}{t.Name, p.ipfsID(t), t.Addresses})
			m.Value = string(v)
		case MetricFreeSpace:
			if !t.Alive {
				continue
			}
			m.Value = strconv.FormatUint(t.FreeSpace, 10)
			m.Weight = int64(min(t.FreeSpace, 1<<62))
		case MetricPinQueue:
			n := 0
			if tr := p.existingTracker(t.ID); tr != nil {
				n = tr.queued()
			}
			m.Value, m.Weight = strconv.Itoa(n), int64(n)
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// ipfsID is the IPFS identity of t: its kubo ID, none for the embedded
// store.
func (p *Pinner) ipfsID(t Target) string {
	if t.RPC == nil {
		return ""
	}
	return t.ID
}

// watchLiveness raises a ping alert for every peer that has not been seen
// alive for metricTTL, once per outage.
func (p *Pinner) watchLiveness(now time.Time) {
	for _, t := range p.peersFor(false) {
		p.mu.Lock()
		last, known := p.lastPing[t.ID]
		switch {
		case t.Alive:
			p.lastPing[t.ID] = now
		case !known:
			p.lastPing[t.ID] = now // first seen down: the TTL starts now
		case !last.IsZero() && now.Sub(last) >= p.cfg.MetricTTL:
			a := Alert{Metric: Metric{
				Name: MetricPing, Peer: t.ID, Value: t.Err, Valid: true,
				Expire: last.Add(p.cfg.MetricTTL).UnixNano(), ReceivedAt: last.UnixNano(),
			}, TriggeredAt: now}
			p.alerts = slices.Insert(p.alerts, 0, a)
			if len(p.alerts) > maxAlerts {
				p.alerts = p.alerts[:maxAlerts]
			}
			p.lastPing[t.ID] = time.Time{} // alerted; again after it was alive
		}
		p.mu.Unlock()
	}
}

// Alerts returns the alerts raised so far, newest first.
func (p *Pinner) Alerts() []Alert {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.alerts)
}

// GCKey is one entry of a peer's GC report: a removed CID, or an error.
type GCKey struct {
	Key   CID    `json:"key"`
	Error string `json:"error,omitempty"`
}

// RepoGC is one peer's GC report.
type RepoGC struct {
	Peer     string  `json:"peer"`
	Peername string  `json:"peername"`
	Keys     []GCKey `json:"keys"`
	Error    string  `json:"error,omitempty"`
}

// GlobalRepoGC is IPFS Cluster's GlobalRepoGC.
type GlobalRepoGC struct {
	PeerMap map[string]RepoGC `json:"peer_map"`
}

// GC runs kubo's repo/gc on every peer (the first only with local), one
// after another as IPFS Cluster does, and reports what each removed. In
// the embedded mode it calls collect, which may be nil (nothing is
// collected).
func (p *Pinner) GC(ctx context.Context, local bool, collect func(context.Context) ([]cid.Cid, error)) GlobalRepoGC {
	g := GlobalRepoGC{PeerMap: map[string]RepoGC{}}
	for _, t := range p.peersFor(local) {
		r := RepoGC{Peer: t.ID, Peername: t.Name, Keys: []GCKey{}}
		var err error
		if t.RPC == nil {
			var keys []cid.Cid
			if collect != nil {
				keys, err = collect(ctx)
			}
			for _, k := range keys {
				r.Keys = append(r.Keys, GCKey{Key: CID{k}})
			}
		} else {
			err = t.RPC.RepoGC(ctx, func(k cid.Cid, msg string) {
				r.Keys = append(r.Keys, GCKey{Key: CID{k}, Error: msg})
			})
		}
		if err != nil {
			// Keys removed before the error are reported with it (the
			// embedded store's compaction may fail after its sweep).
			r.Error = err.Error()
		}
		g.PeerMap[t.ID] = r
	}
	return g
}

// ConnectGraph is IPFS Cluster's ConnectGraph.
type ConnectGraph struct {
	ClusterID         string              `json:"cluster_id"`
	IDtoPeername      map[string]string   `json:"id_to_peername"`
	IPFSLinks         map[string][]string `json:"ipfs_links"`
	ClusterLinks      map[string][]string `json:"cluster_links"`
	ClusterTrustLinks map[string]bool     `json:"cluster_trust_links"`
	ClusterToIPFS     map[string]string   `json:"cluster_to_ipfs"`
}

// Graph describes ingestd and its peers: ingestd (the cluster_id) links to
// every peer, each kubo peer is its own IPFS daemon, and ipfs_links are the
// swarm connections between the kubo peers (swarm/peers, CheckTimeout
// each).
func (p *Pinner) Graph(ctx context.Context) ConnectGraph {
	self := p.cfg.Self
	g := ConnectGraph{
		ClusterID:         self.ID,
		IDtoPeername:      map[string]string{self.ID: self.Name},
		IPFSLinks:         map[string][]string{},
		ClusterLinks:      map[string][]string{self.ID: {}},
		ClusterTrustLinks: map[string]bool{self.ID: true},
		ClusterToIPFS:     map[string]string{},
	}
	peers := p.peersFor(false)
	ids := map[string]bool{}
	for _, t := range peers {
		ids[t.ID] = true
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range peers {
		if t.RPC == nil {
			continue
		}
		g.IDtoPeername[t.ID] = t.Name
		g.ClusterLinks[self.ID] = append(g.ClusterLinks[self.ID], t.ID)
		g.ClusterTrustLinks[t.ID] = true
		g.ClusterToIPFS[t.ID] = t.ID
		if !t.Alive {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, p.cfg.CheckTimeout)
			defer cancel()
			swarm, err := t.RPC.SwarmPeers(cctx)
			if err != nil {
				return
			}
			links := []string{}
			for _, s := range swarm {
				if ids[s] {
					links = append(links, s)
				}
			}
			mu.Lock()
			g.IPFSLinks[t.ID] = links
			mu.Unlock()
		})
	}
	wg.Wait()
	return g
}

// TrackerCounts sums the trackers' items by status: pins queued, running
// and failed over all peers (IPFS Cluster's ipfscluster_pins_* gauges).
func (p *Pinner) TrackerCounts() map[Status]int {
	p.mu.Lock()
	ts := make([]*peerTracker, 0, len(p.trackers))
	for _, t := range p.trackers {
		ts = append(ts, t)
	}
	p.mu.Unlock()
	out := map[Status]int{}
	for _, t := range ts {
		t.mu.Lock()
		for _, it := range t.items {
			out[it.status]++
		}
		t.mu.Unlock()
	}
	return out
}
