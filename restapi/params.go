package restapi

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest/unixfs"
)

// Query is read-only access to a request's query string: fasthttp's
// Args and net/url's Values both fit behind it, which keeps the parser
// testable and fuzzable without a server.
type Query interface {
	Get(key string) string
	// VisitAll calls f for every key, with its first value.
	VisitAll(f func(key, value string))
}

// ValuesQuery adapts url.Values.
type ValuesQuery url.Values

// Get implements Query.
func (v ValuesQuery) Get(k string) string { return url.Values(v).Get(k) }

// VisitAll implements Query.
func (v ValuesQuery) VisitAll(f func(k, v string)) {
	for k, vs := range v {
		if len(vs) > 0 {
			f(k, vs[0])
		}
	}
}

// ErrBadParam is wrapped by every query error; the edge maps it to 400.
var ErrBadParam = errors.New("bad parameter")

// paramError keeps IPFS Cluster's exact message text (spec §4.1) while
// still matching ErrBadParam.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }
func (e *paramError) Unwrap() error { return ErrBadParam }

func badParam(format string, args ...any) error {
	return &paramError{msg: fmt.Sprintf(format, args...)}
}

// PinOptions are IPFS Cluster's pin options (spec §1.6).
type PinOptions struct {
	Name                 string
	Mode                 string // "recursive" or "direct"
	ReplicationFactorMin int
	ReplicationFactorMax int
	ShardSize            uint64
	UserAllocations      []string
	ExpireAt             time.Time
	Metadata             map[string]string
	Origins              []string
	PinUpdate            cid.Cid // pin-update: the pin whose options the new one takes
}

// AddParams is everything a POST /add request says.
type AddParams struct {
	Unixfs         unixfs.Options
	Format         string // "unixfs" or "car"
	Local          bool
	NoPin          bool
	OnlyHash       bool
	StreamChannels bool
	Shard          bool
	// PinAllRoots (pin-roots=all) pins every root of a multi-root CAR.
	PinAllRoots bool
	Pin         PinOptions
}

// Longest values accepted for free-form parameters; everything else has a
// type that bounds it.
const (
	maxNameLen     = 255 // kubo's pin name limit
	maxMetaEntries = 64
	maxMetaLen     = 4096
)

// ParseAddParams reads the /add query: IPFS Cluster's parameters with its
// defaults and messages (spec §4.1), plus the kubo options that change
// CIDs and that IPFS Cluster cannot express (only-hash, inline,
// inline-limit, max-file-links, max-directory-links, max-hamt-fanout,
// preserve-mode, preserve-mtime, profile). Empty values count as absent,
// because the Go client sends every key.
func ParseAddParams(q Query) (*AddParams, error) {
	p := &AddParams{StreamChannels: true, Format: "unixfs", Unixfs: unixfs.DefaultOptions()}
	o := &p.Unixfs
	if prof := q.Get("profile"); prof != "" {
		if err := o.ApplyProfile(prof); err != nil {
			return nil, badParam("parameter profile invalid: %q is not %s or %s", prof, unixfs.ProfileV0, unixfs.ProfileV1)
		}
	}
	bools := []struct {
		name string
		dst  *bool
		set  *bool
	}{
		{"local", &p.Local, nil},
		{"recursive", new(bool), nil},
		{"hidden", new(bool), nil},
		{"wrap-with-directory", &o.Wrap, nil},
		{"shard", &p.Shard, nil},
		{"progress", &o.Progress, nil},
		{"raw-leaves", &o.RawLeaves, &o.RawLeavesSet},
		{"nocopy", new(bool), nil},
		{"no-pin", &p.NoPin, nil},
		{"stream-channels", &p.StreamChannels, nil},
		{"only-hash", &p.OnlyHash, nil},
		{"inline", &o.Inline, nil},
		{"preserve-mode", &o.PreserveMode, nil},
		{"preserve-mtime", &o.PreserveMtime, nil},
	}
	for _, b := range bools {
		v := q.Get(b.name)
		if v == "" {
			continue
		}
		x, err := strconv.ParseBool(v)
		if err != nil {
			return nil, badParam("parameter %s invalid", b.name)
		}
		*b.dst = x
		if b.set != nil {
			*b.set = true
		}
	}
	ints := []struct {
		name string
		dst  *int
	}{
		{"cid-version", &o.CidVersion},
		{"inline-limit", &o.InlineLimit},
		{"max-file-links", &o.MaxFileLinks},
		{"max-directory-links", &o.MaxDirectoryLinks},
		{"max-hamt-fanout", &o.MaxHAMTFanout},
	}
	for _, i := range ints {
		v := q.Get(i.name)
		if v == "" {
			continue
		}
		x, err := strconv.Atoi(v)
		if err != nil {
			return nil, badParam("parameter %s invalid", i.name)
		}
		*i.dst = x
	}
	if v := q.Get("hash"); v != "" {
		code, ok := mh.Names[strings.ToLower(v)]
		if !ok {
			return nil, badParam("hash function name not known: %q", v)
		}
		o.HashFunc = code
	}
	if v := q.Get("chunker"); v != "" {
		o.Chunker = v
	}
	switch q.Get("layout") {
	case "":
	case "balanced":
		o.Trickle = false
	case "trickle":
		o.Trickle = true
	default:
		return nil, badParam("layout parameter is invalid")
	}
	switch q.Get("format") {
	case "", "unixfs":
	case "car":
		p.Format = "car"
	default:
		return nil, badParam("format parameter is invalid")
	}
	switch q.Get("pin-roots") {
	case "", "first":
	case "all":
		p.PinAllRoots = true
	default:
		return nil, badParam("parameter pin-roots invalid: want all or first")
	}
	if err := parsePinOptions(q, &p.Pin); err != nil {
		return nil, err
	}
	if err := o.Resolve(); err != nil {
		return nil, badParam("%s", strings.TrimPrefix(err.Error(), unixfs.ErrBadOption.Error()+": "))
	}
	return p, nil
}

func parsePinOptions(q Query, po *PinOptions) error {
	po.Name = q.Get("name")
	if len(po.Name) > maxNameLen {
		return badParam("parameter name invalid: longer than %d bytes", maxNameLen)
	}
	po.Mode = "recursive"
	if q.Get("mode") == "direct" {
		po.Mode = "direct"
	}
	for _, r := range []struct {
		name string
		dst  *int
	}{{"replication-min", &po.ReplicationFactorMin}, {"replication-max", &po.ReplicationFactorMax}} {
		if v := q.Get(r.name); v != "" {
			x, err := strconv.Atoi(v)
			if err != nil {
				return badParam("parameter %s invalid", r.name)
			}
			*r.dst = x
		}
	}
	if v := q.Get("replication"); v != "" {
		x, err := strconv.Atoi(v)
		if err != nil {
			return badParam("parameter replication invalid")
		}
		po.ReplicationFactorMin, po.ReplicationFactorMax = x, x
	}
	if v := q.Get("shard-size"); v != "" {
		x, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badParam("parameter shard_size is invalid")
		}
		po.ShardSize = x
	}
	if v := q.Get("user-allocations"); v != "" {
		for _, a := range strings.Split(v, ",") {
			// As IPFS Cluster: entries that are not peer IDs are dropped.
			if validPeerID(a) {
				po.UserAllocations = append(po.UserAllocations, a)
			}
		}
	}
	if v := q.Get("expire-at"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return badParam("expire-at cannot be parsed: %s", err)
		}
		po.ExpireAt = t
	} else if v := q.Get("expire-in"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return badParam("expire-in cannot be parsed: %s", err)
		}
		if d < time.Second {
			return badParam("expire-in duration too short")
		}
		po.ExpireAt = time.Now().Add(d)
	}
	po.Metadata = map[string]string{}
	var metaErr error
	q.VisitAll(func(k, v string) {
		key, ok := strings.CutPrefix(k, "meta-")
		if !ok || key == "" || metaErr != nil {
			return
		}
		if len(po.Metadata) >= maxMetaEntries || len(key)+len(v) > maxMetaLen {
			metaErr = badParam("metadata too large: at most %d entries of %d bytes", maxMetaEntries, maxMetaLen)
			return
		}
		po.Metadata[key] = v
	})
	if metaErr != nil {
		return metaErr
	}
	if v := q.Get("origins"); v != "" {
		for _, a := range strings.Split(v, ",") {
			if !strings.Contains(a, "/p2p/") {
				return badParam("multiaddress does not contain peer ID: %s", a)
			}
			po.Origins = append(po.Origins, a)
		}
	}
	if v := q.Get("pin-update"); v != "" {
		c, err := cid.Decode(v)
		if err != nil {
			return badParam("error decoding update option parameter: %s", err)
		}
		po.PinUpdate = c
	}
	return nil
}
