package pinner

import (
	"strings"
	"time"
)

// Status is a tracker status (spec: docs/rest-api.md, "Status"): what one
// peer does or holds for one CID. The strings are IPFS Cluster's.
type Status string

// Tracker statuses, IPFS Cluster's names.
const (
	StatusUndefined            Status = "undefined"
	StatusClusterError         Status = "cluster_error"
	StatusPinError             Status = "pin_error"
	StatusUnpinError           Status = "unpin_error"
	StatusPinned               Status = "pinned"
	StatusPinning              Status = "pinning"
	StatusUnpinning            Status = "unpinning"
	StatusUnpinned             Status = "unpinned"
	StatusRemote               Status = "remote"
	StatusPinQueued            Status = "pin_queued"
	StatusUnpinQueued          Status = "unpin_queued"
	StatusSharded              Status = "sharded"
	StatusUnexpectedlyUnpinned Status = "unexpectedly_unpinned"
)

// errUnexpectedlyUnpinned is IPFS Cluster's error text for a pin that a
// peer should hold and does not.
const errUnexpectedlyUnpinned = "the item should be pinned but it is not"

// Filter is a set of statuses, parsed from a /pins filter.
type Filter map[Status]bool

// ParseFilter parses IPFS Cluster's comma-separated status filter: status
// names plus the composite "error" (cluster, pin and unpin errors) and
// "queued" (pin and unpin queued); spaces are ignored, unknown names too.
// An empty string is the nil Filter, which matches everything. ok is false
// when s is not empty and names nothing known (IPFS Cluster's 400 "invalid
// filter value").
func ParseFilter(s string) (f Filter, ok bool) {
	s = strings.ReplaceAll(s, " ", "")
	if s == "" {
		return nil, true
	}
	f = Filter{}
	for _, name := range strings.Split(s, ",") {
		switch Status(name) {
		case "error":
			f[StatusClusterError], f[StatusPinError], f[StatusUnpinError] = true, true, true
		case "queued":
			f[StatusPinQueued], f[StatusUnpinQueued] = true, true
		case StatusUndefined:
			// IPFS Cluster's "undefined" bit is 0: it adds nothing.
		case StatusClusterError, StatusPinError, StatusUnpinError, StatusPinned, StatusPinning,
			StatusUnpinning, StatusUnpinned, StatusRemote, StatusPinQueued, StatusUnpinQueued,
			StatusSharded, StatusUnexpectedlyUnpinned:
			f[Status(name)] = true
		}
	}
	if len(f) == 0 {
		return nil, false
	}
	return f, true
}

// Match reports whether st passes the filter.
func (f Filter) Match(st Status) bool { return f == nil || f[st] }

// PinInfo is one peer's status for one CID: IPFS Cluster's PinInfoShort,
// the value of GlobalPinInfo.peer_map.
type PinInfo struct {
	PeerName          string    `json:"peername"`
	IPFSPeerID        string    `json:"ipfs_peer_id,omitempty"`
	IPFSPeerAddresses []string  `json:"ipfs_peer_addresses,omitempty"`
	Status            Status    `json:"status"`
	Timestamp         time.Time `json:"timestamp"`
	Error             string    `json:"error"`
	AttemptCount      int       `json:"attempt_count"`
	PriorityPin       bool      `json:"priority_pin"`
}

// GlobalPinInfo is IPFS Cluster's GlobalPinInfo: the pin's attributes and
// every peer's status, keyed by peer ID.
type GlobalPinInfo struct {
	Cid         CID                `json:"cid"`
	Name        string             `json:"name"`
	Allocations []string           `json:"allocations"`
	Origins     []string           `json:"origins"`
	Created     time.Time          `json:"created"`
	Metadata    map[string]string  `json:"metadata"`
	PeerMap     map[string]PinInfo `json:"peer_map"`
}
