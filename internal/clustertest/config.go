package clustertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// DefaultMonitorPingInterval replaces IPFS Cluster's 15s
	// cluster.monitor_ping_interval: a peer sends its ping metric this often
	// and it lives twice as long, so peers see each other (GET /peers)
	// within seconds and a dead peer drops out within 4s.
	DefaultMonitorPingInterval = 2 * time.Second
	// DefaultMetricTTL replaces the 30s metric_ttl of the freespace,
	// pinqueue and tags informers. A peer sends each metric every TTL/2, so
	// allocations see fresh free space at once and a peer whose kubo is
	// down loses its freespace metric within 4s.
	DefaultMetricTTL = 4 * time.Second
)

// restapiAccessLog is the REST API's access log, in the peer's folder.
const restapiAccessLog = "restapi-access.log"

// configEdit is one change to service.json: the value at a dotted path,
// whose key must already exist (so that a key renamed in another IPFS
// Cluster release fails the test instead of being added unread).
type configEdit struct {
	path  string
	value any
}

// configure lists the changes the harness makes to the service.json that
// `ipfs-cluster-service init --consensus crdt` writes for peer p; all else
// keeps IPFS Cluster's defaults (pin_recover_interval, state_sync_interval,
// the CRDT's trusted_peers ["*"], the balanced allocator over tags and
// freespace, the pebble datastore).
func (c *Cluster) configure(p *Peer) []configEdit {
	var others []string
	for _, q := range c.Peers {
		if q != p {
			others = append(others, q.SwarmAddr)
		}
	}
	kubo := multiaddr(p.kuboAPI)
	ttl := DefaultMetricTTL.String()
	edits := []configEdit{
		{"cluster.peername", p.Name},
		{"cluster.secret", c.Secret},
		// TCP only, on loopback: the default also listens on
		// /ip4/0.0.0.0/udp/9096/quic.
		{"cluster.listen_multiaddress", []string{strings.TrimSuffix(p.SwarmAddr, "/p2p/"+p.ID)}},
		// Every other peer, with its ID: each peer dials the others at
		// start, whichever starts first, and re-dials them while running
		// (IPFS Cluster's "priority peers"), so a restarted peer rejoins
		// without --bootstrap.
		{"cluster.peer_addresses", others},
		// 0 disables mDNS; it would find nothing in the namespace anyway.
		{"cluster.mdns_interval", "0s"},
		{"cluster.monitor_ping_interval", DefaultMonitorPingInterval.String()},
		{"api.restapi.http_listen_multiaddress", []string{multiaddr(p.APIAddr)}},
		// The access log goes to its own file (in the config folder), so
		// that the polling of WaitFor does not bury the service's log.
		{"api.restapi.http_log_file", restapiAccessLog},
		{"api.ipfsproxy.listen_multiaddress", multiaddr(p.ProxyAddr)},
		{"api.ipfsproxy.node_multiaddress", kubo},
		{"api.pinsvcapi.http_listen_multiaddress", []string{multiaddr(p.PinSvcAddr)}},
		{"ipfs_connector.ipfshttp.node_multiaddress", kubo},
		{"informer.disk.metric_ttl", ttl},
		{"informer.pinqueue.metric_ttl", ttl},
		{"informer.tags.metric_ttl", ttl},
	}
	if c.opts.authUser != "" {
		edits = append(edits, configEdit{"api.restapi.basic_auth_credentials",
			map[string]string{c.opts.authUser: c.opts.authPassword}})
	}
	return edits
}

// writeConfig applies configure and the EditConfig options to p's
// service.json.
func (c *Cluster) writeConfig(p *Peer) error {
	path := filepath.Join(p.Dir, "service.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read service.json of %s: %w", p.Name, err)
	}
	var cfg map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("cannot decode service.json of %s: %w", p.Name, err)
	}
	for _, e := range c.configure(p) {
		if err := setConfig(cfg, e.path, e.value); err != nil {
			return fmt.Errorf("cannot configure %s: %w", p.Name, err)
		}
	}
	for _, edit := range c.opts.edits {
		if err := edit(p.Index, cfg); err != nil {
			return fmt.Errorf("cannot edit service.json of %s: %w", p.Name, err)
		}
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode service.json of %s: %w", p.Name, err)
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("cannot write service.json of %s: %w", p.Name, err)
	}
	return nil
}

// setConfig sets the value at a dotted path ("cluster.peername") of a
// decoded service.json. Every key on the path must exist.
func setConfig(cfg map[string]any, path string, value any) error {
	keys := strings.Split(path, ".")
	m := cfg
	for i, k := range keys {
		v, ok := m[k]
		if !ok {
			return fmt.Errorf("cannot set %s: service.json has no %s", path, strings.Join(keys[:i+1], "."))
		}
		if i == len(keys)-1 {
			m[k] = value
			return nil
		}
		if m, ok = v.(map[string]any); !ok {
			return fmt.Errorf("cannot set %s: %s is not an object", path, strings.Join(keys[:i+1], "."))
		}
	}
	return nil
}
