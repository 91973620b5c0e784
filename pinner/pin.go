package pinner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	cid "github.com/ipfs/go-cid"
)

// Pin modes (Pin.Mode).
const (
	ModeRecursive = "recursive"
	ModeDirect    = "direct"
)

// Pin types (Pin.Type). ingestd creates only TypePin; the others exist in
// IPFS Cluster's pinset for sharded DAGs.
const (
	TypePin        = "pin"
	TypeMetaPin    = "meta-pin"
	TypeClusterDAG = "clusterdag-pin"
	TypeShard      = "shard-pin"
)

// Pin is IPFS Cluster's Pin object: its PinOptions fields first, then the
// Pin fields, with the JSON keys and key order of
// ../shared/spec/cluster-rest-api.md §5.4.
//
// JSON details that clients depend on: nil slices and maps are null, empty
// ones [] and {} (the REST layer sets Allocations to [] for "everywhere" and
// Metadata to {} on fresh pins); a zero time is "0001-01-01T00:00:00Z";
// CIDs are plain strings, undefined ones null.
type Pin struct {
	ReplicationFactorMin int               `json:"replication_factor_min"`
	ReplicationFactorMax int               `json:"replication_factor_max"`
	Name                 string            `json:"name"`
	Mode                 string            `json:"mode"` // ModeRecursive or ModeDirect
	ShardSize            uint64            `json:"shard_size"`
	UserAllocations      []string          `json:"user_allocations"` // peer IDs, or nil
	ExpireAt             time.Time         `json:"expire_at"`        // zero: never expires
	Metadata             map[string]string `json:"metadata"`
	PinUpdate            CID               `json:"pin_update"`
	Origins              []string          `json:"origins"` // multiaddrs, or nil
	Cid                  CID               `json:"cid"`
	Type                 string            `json:"type"`        // TypePin, …
	Allocations          []string          `json:"allocations"` // peer IDs; [] means everywhere
	MaxDepth             int               `json:"max_depth"`   // -1 recursive, 0 direct
	Reference            CID               `json:"reference"`
	Timestamp            time.Time         `json:"timestamp"` // when the pin was committed
}

// CID is a cid.Cid that encodes to JSON as IPFS Cluster does: a plain string
// in the CID's default encoding ("Qm…" for v0, "bafy…" for v1), or null
// when undefined. go-cid's own JSON form is {"/": "…"}, which Cluster
// clients cannot read.
//
// The zero value is undefined (null).
type CID struct {
	cid.Cid
}

// MarshalJSON implements json.Marshaler.
func (c CID) MarshalJSON() ([]byte, error) {
	if !c.Defined() {
		return []byte("null"), nil
	}
	// CID strings are multibase (base58btc or base32): nothing to escape.
	s := c.String()
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler. It accepts a CID string, null
// or "" (both undefined), and, for tolerance, go-cid's {"/": "…"} form.
func (c *CID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		c.Cid = cid.Undef
		return nil
	case len(b) > 0 && b[0] == '{':
		return c.Cid.UnmarshalJSON(b)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("cannot decode cid %s: %w", b, err)
	}
	if s == "" {
		c.Cid = cid.Undef
		return nil
	}
	parsed, err := cid.Decode(s)
	if err != nil {
		return fmt.Errorf("cannot decode cid %q: %w", s, err)
	}
	c.Cid = parsed
	return nil
}
