package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/pinner"
)

// The cluster routes (spec §2): /id, /peers, /ipfs/gc, /health/*,
// /monitor/*. ingestd presents each pin target as a cluster peer: the
// embedded store as ingestd itself, or each kubo daemon under its kubo
// peer ID (docs/rest-api.md, "Peers").

// idBody is IPFS Cluster's ID object (spec §5.2).
type idBody struct {
	ID                    string   `json:"id"`
	Addresses             []string `json:"addresses"`
	ClusterPeers          []string `json:"cluster_peers"`
	ClusterPeersAddresses []string `json:"cluster_peers_addresses"`
	Version               string   `json:"version"`
	Commit                string   `json:"commit"`
	RPCProtocolVersion    string   `json:"rpc_protocol_version"`
	Error                 string   `json:"error"`
	IPFS                  ipfsID   `json:"ipfs"`
	Peername              string   `json:"peername"`
}

// ipfsID is the "ipfs" member of an ID: id omitted when unknown.
type ipfsID struct {
	ID        string   `json:"id,omitempty"`
	Addresses []string `json:"addresses"`
	Error     string   `json:"error"`
}

// p2pAddrs appends /p2p/<id> to each address that lacks it.
func p2pAddrs(addrs []string, id string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if !strings.Contains(a, "/p2p/") {
			a += "/p2p/" + id
		}
		out = append(out, a)
	}
	return out
}

// listenAddrs is the API's address as a multiaddr with /p2p/<id>: ingestd
// has no libp2p host, and this is where its peer is reachable.
func (s *Server) listenAddrs() []string {
	a, _ := s.listenAddr.Load().(net.Addr)
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return []string{}
	}
	proto := "ip4"
	if ta.IP.To4() == nil {
		proto = "ip6"
	}
	return []string{fmt.Sprintf("/%s/%s/tcp/%d/p2p/%s", proto, ta.IP, ta.Port, s.cfg.PeerID)}
}

// id is GET /id: ingestd itself, its peers, and as its IPFS daemon the
// first live kubo peer (none in the embedded mode).
func (s *Server) id() idBody {
	b := idBody{
		ID:                    s.cfg.PeerID,
		Addresses:             s.listenAddrs(),
		ClusterPeers:          []string{},
		ClusterPeersAddresses: []string{},
		Version:               Version,
		RPCProtocolVersion:    "/ipfscluster/1.0/rpc",
		Peername:              s.cfg.PeerName,
	}
	var errs []string
	for _, t := range s.pinner.Peers() {
		if t.ID == "" {
			errs = append(errs, fmt.Sprintf("%s: %s", t.Name, t.Err))
			continue
		}
		b.ClusterPeers = append(b.ClusterPeers, t.ID)
		if t.RPC == nil {
			continue
		}
		b.ClusterPeersAddresses = append(b.ClusterPeersAddresses, p2pAddrs(t.Addresses, t.ID)...)
		if b.IPFS.ID == "" && t.Alive {
			b.IPFS = ipfsID{ID: t.ID, Addresses: t.Addresses}
		} else if !t.Alive {
			errs = append(errs, fmt.Sprintf("%s: %s", t.PeerState, t.Err))
		}
	}
	if !s.pinner.Embedded() && b.IPFS.ID == "" {
		b.IPFS.Error = "no IPFS peer answers: " + strings.Join(errs, "; ")
	}
	return b
}

// peerID is the ID object of one peer as GET /peers streams it.
func (s *Server) peerID(t pinner.Target, all []string) idBody {
	if t.RPC == nil {
		return s.id()
	}
	b := idBody{
		ID:                    t.ID,
		Addresses:             p2pAddrs(t.Addresses, t.ID),
		ClusterPeers:          all,
		ClusterPeersAddresses: []string{},
		Version:               Version,
		RPCProtocolVersion:    "/ipfscluster/1.0/rpc",
		IPFS:                  ipfsID{ID: t.ID, Addresses: t.Addresses},
		Peername:              t.Name,
	}
	if !t.Alive {
		b.Error, b.IPFS.Error = t.Err, t.Err
	}
	return b
}

// handlePeers is GET /peers: one ID per peer whose ID is known (an
// unreachable one with its error), from the last liveness check.
func (s *Server) handlePeers(ctx *fasthttp.RequestCtx) error {
	s.streamJSON(ctx, func(_ context.Context, send func(any) error) error {
		peers := s.pinner.Peers()
		var all []string
		for _, t := range peers {
			if t.ID != "" {
				all = append(all, t.ID)
			}
		}
		for _, t := range peers {
			if t.ID == "" {
				continue
			}
			if err := send(s.peerID(t, all)); err != nil {
				return err
			}
		}
		return nil
	})
	return nil
}

// maxPeerBody bounds the body of POST /peers.
const maxPeerBody = 64 << 10

// peerAddBody is POST /peers: IPFS Cluster's {"peer_id"} plus ingestd's
// "url" (and optional "name") of the kubo RPC API to add.
type peerAddBody struct {
	PeerID string `json:"peer_id"`
	URL    string `json:"url"`
	Name   string `json:"name"`
}

// handlePeerAdd is POST /peers: adds a kubo target at run time, or
// restores one removed with DELETE /peers/{id} by its ID alone.
func (s *Server) handlePeerAdd(ctx *fasthttp.RequestCtx) error {
	var body peerAddBody
	raw, err := s.smallBody(ctx, maxPeerBody)
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil {
		return badParam("error decoding request body")
	}
	if body.PeerID != "" && !validPeerID(body.PeerID) {
		return badParam("error decoding peer_id")
	}
	if s.cfg.Fanout == nil {
		return badParam("cannot add peer %s: ingestd runs with its embedded store; start it with --peer to pin on kubo peers", body.PeerID)
	}
	pc := blockfanout.PeerConfig{URL: body.URL, Name: body.Name}
	if body.URL == "" {
		s.peersMu.Lock()
		old, ok := s.removed[body.PeerID]
		s.peersMu.Unlock()
		if body.PeerID == "" || !ok {
			return badParam("cannot add peer %q: ingestd needs the URL of its kubo RPC API: send {\"peer_id\": …, \"url\": \"http://host:5001\"}", body.PeerID)
		}
		pc = old
	}
	actx, cancel := context.WithTimeout(s.baseCtx, 30*time.Second)
	defer cancel()
	st, err := s.cfg.Fanout.AddPeer(actx, pc)
	if err != nil {
		return &StatusError{Code: fasthttp.StatusBadRequest, Err: fmt.Errorf("cannot add peer: %w", err)}
	}
	if body.PeerID != "" && st.ID != body.PeerID {
		_, _ = s.cfg.Fanout.RemovePeer(st.Peer.Name)
		return badParam("cannot add peer %s: the kubo daemon at %s has peer ID %q", body.PeerID, pc.URL, st.ID)
	}
	s.peersMu.Lock()
	delete(s.removed, st.ID)
	s.peersMu.Unlock()
	for _, t := range s.pinner.Peers() {
		if t.ID == st.ID {
			writeJSON(ctx, fasthttp.StatusOK, s.peerID(t, []string{t.ID}))
			return nil
		}
	}
	return fmt.Errorf("cannot add peer %s: it did not answer /api/v0/id: %s", pc.URL, st.LastErr)
}

// handlePeerRm is DELETE /peers/{id}: 204 without a body (the Go client
// fails on any 200).
func (s *Server) handlePeerRm(ctx *fasthttp.RequestCtx, id string) error {
	if !validPeerID(id) {
		return badParam("error decoding Peer ID: %q is not a peer ID", id)
	}
	if s.cfg.Fanout == nil {
		return badParam("cannot remove peer %s: the embedded store is ingestd's only peer", id)
	}
	st, err := s.cfg.Fanout.RemovePeer(id)
	if errors.Is(err, blockfanout.ErrUnknownPeer) {
		return &StatusError{Code: fasthttp.StatusNotFound, Err: fmt.Errorf("cannot remove peer %s: %w", id, err)}
	}
	if err != nil {
		return err
	}
	s.peersMu.Lock()
	s.removed[id] = blockfanout.PeerConfig{Name: st.Peer.Name, URL: st.Peer.URL}
	s.peersMu.Unlock()
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// smallBody reads a request body of at most limit bytes, streamed or not.
func (s *Server) smallBody(ctx *fasthttp.RequestCtx, limit int64) ([]byte, error) {
	r := s.requestBody(s.baseCtx, ctx)
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body longer than %d bytes", limit)
	}
	return b, nil
}

// gcTimeout bounds POST /ipfs/gc.
const gcTimeout = 30 * time.Minute

// handleGC is POST /ipfs/gc: kubo's repo/gc on every peer, one after the
// other; per-peer failures inside the answer, status 200.
func (s *Server) handleGC(ctx *fasthttp.RequestCtx) error {
	gctx, cancel := context.WithTimeout(s.baseCtx, gcTimeout)
	defer cancel()
	writeJSON(ctx, fasthttp.StatusOK, s.pinner.GC(gctx, localParam(ctx), s.collect))
	return nil
}

// handleHealth serves /health/graph, /health/alerts, /health/bandwidth and
// /monitor/metrics.
func (s *Server) handleHealth(ctx *fasthttp.RequestCtx, p string) error {
	switch p {
	case "/health/graph":
		gctx, cancel := context.WithTimeout(s.baseCtx, 30*time.Second)
		defer cancel()
		writeJSON(ctx, fasthttp.StatusOK, s.pinner.Graph(gctx))
	case "/health/alerts":
		alerts := s.pinner.Alerts()
		if alerts == nil {
			alerts = []pinner.Alert{}
		}
		writeJSON(ctx, fasthttp.StatusOK, alerts)
	case "/health/bandwidth":
		// ingestd has no libp2p host, so no protocol has traffic to
		// report: an empty object, which clients read as "none".
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{})
	case "/monitor/metrics":
		writeJSON(ctx, fasthttp.StatusOK, s.pinner.MetricNames())
	}
	return nil
}
