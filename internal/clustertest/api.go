package clustertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// The types below decode the parts of IPFS Cluster's REST API answers that
// tests look at; they are not the cluster's own types (ingestd does not
// depend on IPFS Cluster), and unknown fields are ignored.

// PeerInfo is one object of GET /peers, or GET /id.
type PeerInfo struct {
	ID           string   `json:"id"`
	Peername     string   `json:"peername"`
	Addresses    []string `json:"addresses"`
	ClusterPeers []string `json:"cluster_peers"`
	Version      string   `json:"version"`
	Error        string   `json:"error"`
	IPFS         struct {
		ID        string   `json:"id"`
		Addresses []string `json:"addresses"`
		Error     string   `json:"error"`
	} `json:"ipfs"`
}

// Metric is one object of GET /monitor/metrics/{name}.
type Metric struct {
	Name   string `json:"name"`
	Peer   string `json:"peer"`
	Value  string `json:"value"`
	Expire int64  `json:"expire"` // Unix nanoseconds
	Valid  bool   `json:"valid"`
	Weight int64  `json:"weight"`
}

// Expired reports whether the metric's expiry is at or before now.
func (m Metric) Expired(now time.Time) bool { return m.Expire <= now.UnixNano() }

// GlobalPinInfo is the answer of GET /pins/{cid}: the status of one CID on
// every peer.
type GlobalPinInfo struct {
	Cid         string             `json:"cid"`
	Name        string             `json:"name"`
	Allocations []string           `json:"allocations"`
	Metadata    map[string]string  `json:"metadata"`
	PeerMap     map[string]PinInfo `json:"peer_map"`
}

// PinInfo is one peer's entry in GlobalPinInfo.PeerMap.
type PinInfo struct {
	Peername string `json:"peername"`
	IPFS     string `json:"ipfs_peer_id"`
	// Status is IPFS Cluster's tracker status: "pinned", "pinning",
	// "pin_queued", "remote", "cluster_error", "pin_error"...
	Status string `json:"status"`
	Error  string `json:"error"`
}

// httpClient talks only to loopback peers, so it ignores proxy settings.
var httpClient = &http.Client{
	Transport: &http.Transport{Proxy: nil},
	Timeout:   2 * time.Minute,
}

// Get sends GET <path> to peer i's REST API (with the BasicAuth
// credentials, if any) and returns the body; a status other than 2xx is an
// error that quotes the body.
func (c *Cluster) Get(i int, path string) ([]byte, error) {
	p := c.Peers[i]
	req, err := http.NewRequest(http.MethodGet, p.URL()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot build request for %s: %w", path, err)
	}
	if c.opts.authUser != "" {
		req.SetBasicAuth(c.opts.authUser, c.opts.authPassword)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot GET %s from %s: %w", path, p.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("cannot read GET %s from %s: %w", path, p.Name, err)
	}
	// A stream that failed midway announces it in this trailer.
	if e := resp.Trailer.Get("X-Stream-Error"); e != "" {
		return body, fmt.Errorf("cannot GET %s from %s: stream error %q", path, p.Name, e)
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("cannot GET %s from %s: HTTP %s: %s", path, p.Name, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// GetJSON is Get and decodes the body (one JSON value) into v.
func (c *Cluster) GetJSON(i int, path string, v any) error {
	body, err := c.Get(i, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("cannot decode GET %s from %s: %w (%q)", path, c.Peers[i].Name, err, body)
	}
	return nil
}

// PeerList returns GET /peers of peer i: the peers it sees, one object of
// the NDJSON stream each.
func (c *Cluster) PeerList(i int) ([]PeerInfo, error) {
	body, err := c.Get(i, "/peers")
	if err != nil {
		return nil, err
	}
	var peers []PeerInfo
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var p PeerInfo
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return peers, nil
		}
		if err != nil {
			return nil, fmt.Errorf("cannot decode GET /peers from %s: %w (%q)", c.Peers[i].Name, err, body)
		}
		peers = append(peers, p)
	}
}

// Metrics returns GET /monitor/metrics/{name} of peer i: the latest metric
// of that name it holds from each peer, expired or not.
func (c *Cluster) Metrics(i int, name string) ([]Metric, error) {
	var m []Metric
	err := c.GetJSON(i, "/monitor/metrics/"+url.PathEscape(name), &m)
	return m, err
}

// Status returns GET /pins/{cid} of peer i: the CID's status on every peer.
func (c *Cluster) Status(i int, cid string) (GlobalPinInfo, error) {
	var g GlobalPinInfo
	err := c.GetJSON(i, "/pins/"+url.PathEscape(cid), &g)
	return g, err
}
