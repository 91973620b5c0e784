package clients

import (
	"bytes"
	"encoding/json"
	"net"
	"strconv"
	"testing"

	"github.com/ipfs-cluster/ipfs-cluster/api"
	"github.com/ipfs-cluster/ipfs-cluster/api/rest/client"
	peer "github.com/libp2p/go-libp2p/core/peer"
)

// strangerPeer is a valid peer ID (from the spec's examples) that is not
// part of any cluster started here.
const strangerPeer = "12D3KooWEU3Vh8Ktb3fAAGnqwW6jG1jvi3yxvzd4a2NMUshdUHBw"

func TestID(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	id, err := c.ID(t.Context())
	if err != nil {
		t.Fatalf("ID: %v", err)
	}
	if id.ID == "" {
		t.Fatal("ID has no peer ID")
	}
	if id.Peername != s.PeerName {
		t.Errorf("peername %q, want %q (--peername)", id.Peername, s.PeerName)
	}
	if id.Version != "1.1.6" {
		t.Errorf("version %q, want \"1.1.6\"", id.Version)
	}
	// cluster_peers is the whole peerset including self (spec §5.2); in the
	// embedded mode ingestd is the only peer.
	if len(id.ClusterPeers) != 1 || id.ClusterPeers[0] != id.ID {
		t.Errorf("cluster_peers %v, want [%s]", id.ClusterPeers, id.ID)
	}
	if id.Error != "" {
		t.Errorf("error %q on a healthy peer", id.Error)
	}
	// The embedded store is this peer's IPFS and is always there, so there
	// is no IPFS connection error to report (spec §2 GET /id). Addresses
	// are not asserted: without a libp2p host there are none to show, and
	// the spec only requires that they parse, which decoding checked.
	if id.IPFS.Error != "" {
		t.Errorf("ipfs.error %q in the embedded mode", id.IPFS.Error)
	}
}

func TestVersion(t *testing.T) {
	s := startIngestd(t)
	v, err := s.client(t).Version(t.Context())
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.Version != "1.1.6" {
		t.Errorf("version %q, want \"1.1.6\" (spec §2 GET /version)", v.Version)
	}
}

func TestPeers(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	ids, err := collect(func(out chan<- api.ID) error { return c.Peers(t.Context(), out) })
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	if len(ids) != 1 || ids[0].ID != self || ids[0].Peername != s.PeerName {
		t.Fatalf("Peers = %+v, want just this peer %s %q", ids, self, s.PeerName)
	}
}

// onlySelf fails unless GET /peers lists exactly this peer.
func onlySelf(t *testing.T, c client.Client, self peer.ID) {
	t.Helper()
	ids, err := collect(func(out chan<- api.ID) error { return c.Peers(t.Context(), out) })
	if err != nil {
		t.Fatalf("Peers: %v", err)
	}
	if len(ids) != 1 || ids[0].ID != self {
		var got []peer.ID
		for _, id := range ids {
			got = append(got, id.ID)
		}
		t.Errorf("Peers = %v, want just this peer %s", got, self)
	}
}

func TestPeerAdd(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	// An empty peer ID reaches the server as {"peer_id":""}: 400 (spec §2).
	_, err := c.PeerAdd(t.Context(), peer.ID(""))
	wantAPIError(t, "PeerAdd(\"\")", err, 400)

	// A peer nobody can reach cannot join. The reference server (crdt)
	// answers 500 after failing to contact it; ingestd in the embedded
	// mode has no kubo peers to add and answers 400 with the reason
	// (docs/rest-api.md). Either way the peerset does not change.
	stranger, err := peer.Decode(strangerPeer)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.PeerAdd(t.Context(), stranger)
	if err != nil {
		wantAPIError(t, "PeerAdd(unreachable peer)", err, 400)
	} else if id.ID != stranger || id.Error == "" {
		t.Errorf("PeerAdd(unreachable peer) succeeded with %+v, want an error", id)
	}
	onlySelf(t, c, self)
}

func TestPeerRm(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	// Bytes that are no peer ID: 400 "error decoding Peer ID" (spec §2).
	err := c.PeerRm(t.Context(), peer.ID("not a peer id"))
	wantAPIError(t, "PeerRm(garbage)", err, 400)

	// Removing a stranger leaves this peer in place. The spec's success is
	// 204; the reference crdt server answers 500 (it cannot remove peers),
	// ingestd's embedded mode 400 (its one peer cannot be removed).
	stranger, err := peer.Decode(strangerPeer)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PeerRm(t.Context(), stranger); err != nil {
		wantAPIError(t, "PeerRm(stranger)", err, 400)
	}
	onlySelf(t, c, self)
	if _, err := c.ID(t.Context()); err != nil {
		t.Errorf("ID after PeerRm: %v", err)
	}
}

func TestHealth(t *testing.T) {
	s := startIngestd(t)
	if err := s.client(t).Health(t.Context()); err != nil {
		t.Fatalf("Health: %v (spec §2: 204 with no body)", err)
	}
}

func TestAlerts(t *testing.T) {
	s := startIngestd(t)
	alerts, err := s.client(t).Alerts(t.Context())
	if err != nil {
		t.Fatalf("Alerts: %v", err)
	}
	// Alerts come from metrics of peers that stopped reporting; the one
	// peer of the embedded mode is the one answering.
	if len(alerts) != 0 {
		t.Errorf("a healthy one-peer cluster has alerts: %+v", alerts)
	}
}

func TestGetConnectGraph(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)
	g, err := c.GetConnectGraph(t.Context())
	if err != nil {
		t.Fatalf("GetConnectGraph: %v", err)
	}
	if g.ClusterID != self {
		t.Errorf("cluster_id %s, want the contacted peer %s", g.ClusterID, self)
	}
	if name, ok := g.IDtoPeername[self.String()]; !ok || name != s.PeerName {
		t.Errorf("id_to_peername %v, want %s → %q", g.IDtoPeername, self, s.PeerName)
	}
	// A one-peer cluster has no links to anyone else.
	for from, tos := range g.ClusterLinks {
		if from != self.String() {
			t.Errorf("cluster_links has a peer %s outside the one-peer cluster", from)
		}
		for _, to := range tos {
			if to != self {
				t.Errorf("cluster link %s → %s in a one-peer cluster", from, to)
			}
		}
	}
}

func TestMetrics(t *testing.T) {
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	names, err := c.MetricNames(t.Context())
	if err != nil {
		t.Fatalf("MetricNames: %v", err)
	}
	if len(names) == 0 {
		t.Fatal("MetricNames is empty; a live peer has at least its ping metric (spec §4.6: pin-everywhere goes to the peers with a valid ping)")
	}
	for _, name := range names {
		ms, err := c.Metrics(t.Context(), name)
		if err != nil {
			t.Errorf("Metrics(%q): %v", name, err)
			continue
		}
		// The latest valid metric of each current peer (spec §2).
		if len(ms) != 1 {
			t.Errorf("Metrics(%q) = %+v, want one metric for the one peer", name, ms)
			continue
		}
		m := ms[0]
		if m.Name != name || m.Peer != self || !m.Valid || m.Expire == 0 {
			t.Errorf("Metrics(%q) = %+v, want name %q, peer %s, valid, with an expiry", name, m, name, self)
		}
		switch name {
		case "freespace": // spec §5.8: free bytes in decimal; weight is the same number
			n, err := strconv.ParseInt(m.Value, 10, 64)
			if err != nil || n != m.Weight {
				t.Errorf("freespace value %q weight %d, want the same decimal number", m.Value, m.Weight)
			}
		case "ping": // spec §5.8: a JSON document with the peer name
			var v struct {
				PeerName string `json:"peer_name"`
			}
			if err := json.Unmarshal([]byte(m.Value), &v); err != nil || v.PeerName != s.PeerName {
				t.Errorf("ping value %q, want JSON with peer_name %q", m.Value, s.PeerName)
			}
		}
	}

	ms, err := c.Metrics(t.Context(), "no-such-metric")
	if err != nil {
		t.Errorf("Metrics(unknown name): %v, want an empty list (spec §8)", err)
	} else if len(ms) != 0 {
		t.Errorf("Metrics(unknown name) = %+v, want none", ms)
	}
}

func TestBandwidthByProtocol(t *testing.T) {
	s := startIngestd(t)
	bw, err := s.client(t).BandwidthByProtocol(t.Context())
	if err != nil {
		t.Fatalf("BandwidthByProtocol: %v", err)
	}
	// No libp2p protocols run in the embedded mode, so there is nothing to
	// require beyond a decodable object with sane counters.
	for proto, b := range bw {
		if b.TotalIn < 0 || b.TotalOut < 0 || b.RateIn < 0 || b.RateOut < 0 {
			t.Errorf("%s: negative counters %+v", proto, b)
		}
	}
}

// TestRepoGC: garbage collection removes the blocks nothing pins and keeps
// the pinned ones; what it removed is then really gone.
func TestRepoGC(t *testing.T) {
	k := needKubo(t)
	s := startIngestd(t)
	c := s.client(t)
	self := peerID(t, c)

	kept := addPinned(t, c, k, "kept.bin", randBytes("gc-kept", 3000), nil)
	garbage := upload(t, c, k, "garbage.bin", randBytes("gc-garbage", 3000))

	collected := func(local bool) [][]byte {
		t.Helper()
		gc, err := c.RepoGC(t.Context(), local)
		if err != nil {
			t.Fatalf("RepoGC(local=%t): %v", local, err)
		}
		if len(gc.PeerMap) != 1 {
			t.Fatalf("RepoGC(local=%t) peer_map %v, want one entry for this peer", local, gc.PeerMap)
		}
		r, ok := gc.PeerMap[self.String()]
		if !ok || r.Peer != self || r.Error != "" {
			t.Fatalf("RepoGC(local=%t) = %+v, want this peer's entry without error", local, gc.PeerMap)
		}
		var mhs [][]byte
		for _, key := range r.Keys {
			if key.Error != "" {
				t.Errorf("RepoGC(local=%t): key error %q", local, key.Error)
			}
			if key.Key.Defined() {
				mhs = append(mhs, key.Key.Hash())
			}
		}
		return mhs
	}
	// Blockstores are keyed by multihash (spec §4.7): compare those.
	has := func(mhs [][]byte, ci api.Cid) bool {
		for _, m := range mhs {
			if bytes.Equal(m, ci.Hash()) {
				return true
			}
		}
		return false
	}

	first := collected(false)
	if !has(first, garbage) {
		t.Errorf("RepoGC did not report the unpinned %s among %d removed keys", garbage, len(first))
	}
	if has(first, kept) {
		t.Errorf("RepoGC removed the pinned %s", kept)
	}
	if second := collected(true); has(second, garbage) || has(second, kept) {
		t.Errorf("the second RepoGC removed %s or %s again", garbage, kept)
	}

	gpi, err := c.Status(t.Context(), kept, false)
	if err != nil {
		t.Fatalf("Status(kept): %v", err)
	}
	if st := statusOf(t, gpi, self).Status; st != api.TrackerStatusPinned {
		t.Errorf("pinned content is %s after GC, want pinned", st)
	}
	// The collected content is gone: pinning it now cannot succeed.
	if _, err := c.Pin(t.Context(), garbage, api.PinOptions{}); err != nil {
		t.Fatalf("Pin(collected): %v", err)
	}
	if pi := waitSettled(t, c, garbage, self); pi.Status != api.TrackerStatusPinError {
		t.Errorf("pin of collected content settled as %s, want pin_error", pi.Status)
	}
}

// TestLBClientFailover: the load-balancing client (what ipfs-cluster-ctl
// builds from several --host values) skips a dead address, retrying only on
// transport errors (spec §6.1).
func TestLBClientFailover(t *testing.T) {
	s := startIngestd(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, deadPort, _ := net.SplitHostPort(l.Addr().String())
	l.Close()

	dead := s.clientConfig()
	dead.Port = deadPort
	lb, err := client.NewLBClient(&client.Failover{}, []*client.Config{dead, s.clientConfig()}, 2)
	if err != nil {
		t.Fatalf("NewLBClient: %v", err)
	}
	id, err := lb.ID(t.Context())
	if err != nil {
		t.Fatalf("ID through the failover client: %v", err)
	}
	if want := peerID(t, s.client(t)); id.ID != want {
		t.Errorf("ID %s, want %s", id.ID, want)
	}
	// An HTTP error is an answer, not a reason to try another peer.
	_, err = lb.Allocation(t.Context(), missingCid(t))
	wantAPIError(t, "Allocation(unknown) through the failover client", err, 404)
}
