package pinner

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotEnoughPeers is returned, wrapped, by Allocate when fewer live peers
// than replication-min exist.
var ErrNotEnoughPeers = errors.New("pinner: not enough peers to allocate")

// PeerState is a pin target as allocation sees it: one kubo daemon (or, in
// the embedded mode, ingestd itself).
type PeerState struct {
	ID        string // kubo peer ID, "" until known
	Name      string // configured name
	Alive     bool   // the last liveness check succeeded
	FreeSpace uint64 // bytes, from the last repo/stat
	Err       string // the last error seen with this peer
}

// String is the form errors use: "name (id X)".
func (p PeerState) String() string {
	id := p.ID
	if id == "" {
		id = "unknown"
	}
	return fmt.Sprintf("%s (id %s)", p.Name, id)
}

// Allocate is ingestd's one allocation policy, IPFS Cluster's balanced
// allocator for the pin and add paths (docs/rest-api.md, "Allocation"):
// first the user allocations, in their order, that name a live peer (by
// kubo peer ID or by name; others are skipped), then the other live peers
// with the most free space first (ties in the given order). It returns up
// to rmax peers; rmax -1 means every live peer. It fails with
// ErrNotEnoughPeers when fewer than rmin are live; rmin -1 means every live
// peer, of which there must be at least one. rmin and rmax are resolved
// replication factors: both -1, or 1 <= rmin <= rmax (see CheckFactors).
func Allocate(peers []PeerState, rmin, rmax int, user []string) ([]PeerState, error) {
	if err := CheckFactors(rmin, rmax); err != nil {
		return nil, fmt.Errorf("cannot allocate peers: %w", err)
	}
	var live []PeerState
	var down []string
	for _, p := range peers {
		if p.Alive {
			live = append(live, p)
			continue
		}
		reason := p.Err
		if reason == "" {
			reason = "not checked yet"
		}
		down = append(down, fmt.Sprintf("%s: %s", p, reason))
	}
	need := rmin
	if rmin == -1 {
		need = 1
	}
	if len(live) < need {
		msg := fmt.Sprintf("need at least %d, %d of %d live", need, len(live), len(peers))
		if len(down) > 0 {
			msg += "; down: " + strings.Join(down, "; ")
		}
		return nil, fmt.Errorf("cannot allocate peers: %w: %s", ErrNotEnoughPeers, msg)
	}

	out := make([]PeerState, 0, len(live))
	picked := make([]bool, len(live))
	for _, u := range user {
		for i, p := range live {
			if !picked[i] && u != "" && (u == p.ID || u == p.Name) {
				picked[i] = true
				out = append(out, p)
				break
			}
		}
	}
	rest := make([]PeerState, 0, len(live))
	for i, p := range live {
		if !picked[i] {
			rest = append(rest, p)
		}
	}
	slices.SortStableFunc(rest, func(a, b PeerState) int {
		switch {
		case a.FreeSpace > b.FreeSpace:
			return -1
		case a.FreeSpace < b.FreeSpace:
			return 1
		}
		return 0
	})
	out = append(out, rest...)
	if rmax != -1 && len(out) > rmax {
		out = out[:rmax]
	}
	return out, nil
}

// ErrBadFactors is returned, wrapped, for replication factors that cannot
// be satisfied by any peer set.
var ErrBadFactors = errors.New("pinner: invalid replication factors")

// CheckFactors validates resolved replication factors as IPFS Cluster
// does: both -1 (everywhere), or 1 <= min <= max.
func CheckFactors(rmin, rmax int) error {
	switch {
	case (rmin == -1) != (rmax == -1):
		return fmt.Errorf("%w: min %d and max %d must both be -1 (everywhere) or both positive", ErrBadFactors, rmin, rmax)
	case rmin != -1 && rmin < 1:
		return fmt.Errorf("%w: min %d is below 1", ErrBadFactors, rmin)
	case rmin > rmax:
		return fmt.Errorf("%w: cluster.replication_factor_min (%d) is larger than max (%d)", ErrBadFactors, rmin, rmax)
	}
	return nil
}
