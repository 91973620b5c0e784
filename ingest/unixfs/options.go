package unixfs

import (
	"bytes"
	"errors"
	"fmt"

	chunker "github.com/ipfs/boxo/chunker"
	dag "github.com/ipfs/boxo/ipld/merkledag"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/boxo/verifcid"
	cid "github.com/ipfs/go-cid"
	"github.com/ipfs/go-cidutil"
	mh "github.com/multiformats/go-multihash"
)

// Defaults, as kubo's `ipfs add` without configuration (the unixfs-v0-2015
// profile of IPIP-499).
const (
	DefaultChunker          = "size-262144"
	DefaultMaxFileLinks     = 174
	DefaultMaxHAMTFanout    = 256
	DefaultHAMTThreshold    = 256 << 10 // bytes of estimated directory block size
	DefaultInlineLimit      = 32
	MaxInlineLimit          = verifcid.DefaultMaxIdentityDigestSize
	DefaultSymlinkMaxTarget = 4096 // longest symlink target read from an upload (PATH_MAX)
)

// Profile names accepted by ApplyProfile (IPIP-499).
const (
	ProfileV0 = "unixfs-v0-2015"
	ProfileV1 = "unixfs-v1-2025"
)

// ErrBadOption is wrapped by every error that rejects an option value.
var ErrBadOption = errors.New("unixfs: bad option")

// Options are the per-request settings that decide CIDs. The zero value is
// not usable: start from DefaultOptions (or ApplyProfile) and call Resolve.
// Every field is per request: nothing here touches boxo's package globals, so
// concurrent adds with different options do not disturb each other.
type Options struct {
	Chunker           string // "size-N", "rabin[-…]", "buzhash"; default size-262144
	RawLeaves         bool
	RawLeavesSet      bool   // raw-leaves was given explicitly
	CidVersion        int    // 0 or 1; -1 = not given (0 unless the hash forces 1)
	HashFunc          uint64 // multihash code; default sha2-256
	Trickle           bool
	MaxFileLinks      int // links per file node; default 174
	MaxDirectoryLinks int // 0 = no limit
	MaxHAMTFanout     int // power of two 8..1024; default 256
	SizeEstimation    uio.SizeEstimationMode
	HAMTThreshold     int // directories whose estimated size exceeds this become HAMTs; default 256 KiB
	Inline            bool
	InlineLimit       int // default 32
	PreserveMode      bool
	PreserveMtime     bool
	Wrap              bool
	Progress          bool

	// Limits of one upload, not options of kubo: 0 means the default.
	MaxEntries   int // entries, implied directories included; default DefaultMaxEntries
	MaxPathBytes int // bytes of all their paths; default DefaultMaxPathBytes

	builder cid.Builder
}

// DefaultOptions returns kubo's defaults.
func DefaultOptions() Options {
	return Options{
		Chunker:        DefaultChunker,
		CidVersion:     -1,
		HashFunc:       mh.SHA2_256,
		MaxFileLinks:   DefaultMaxFileLinks,
		MaxHAMTFanout:  DefaultMaxHAMTFanout,
		SizeEstimation: uio.SizeEstimationLinks,
		HAMTThreshold:  DefaultHAMTThreshold,
		InlineLimit:    DefaultInlineLimit,
	}
}

// ApplyProfile sets every option the IPIP-499 profile names, exactly as
// `ipfs config profile apply NAME` does in kubo; options given explicitly in
// the request are applied after it and win.
func (o *Options) ApplyProfile(name string) error {
	switch name {
	case ProfileV0:
		o.CidVersion, o.RawLeaves, o.RawLeavesSet = 0, false, true
		o.Chunker, o.MaxFileLinks = "size-262144", 174
		o.SizeEstimation = uio.SizeEstimationLinks
	case ProfileV1:
		o.CidVersion, o.RawLeaves, o.RawLeavesSet = 1, true, true
		o.Chunker, o.MaxFileLinks = "size-1048576", 1024
		o.SizeEstimation = uio.SizeEstimationBlock
	default:
		return fmt.Errorf("%w: unknown profile %q (want %s or %s)", ErrBadOption, name, ProfileV0, ProfileV1)
	}
	o.HashFunc = mh.SHA2_256
	o.MaxDirectoryLinks, o.MaxHAMTFanout, o.HAMTThreshold = 0, 256, DefaultHAMTThreshold
	o.Trickle = false
	return nil
}

// Resolve checks the options and applies kubo's implications, in kubo's
// order (core/coreiface/options/unixfs.go and core/commands/add.go):
// UnixFS metadata turns raw leaves off, a hash other than sha2-256 needs
// CIDv1, and CIDv1 implies raw leaves unless raw-leaves was given.
func (o *Options) Resolve() error {
	if err := CheckChunker(o.Chunker); err != nil {
		return err
	}
	if o.Inline && (o.InlineLimit < 0 || o.InlineLimit > MaxInlineLimit) {
		return fmt.Errorf("%w: inline-limit %d exceeds maximum allowed size of %d bytes", ErrBadOption, o.InlineLimit, MaxInlineLimit)
	}
	if o.MaxFileLinks <= 0 {
		return fmt.Errorf("%w: max-file-links must be positive, got %d", ErrBadOption, o.MaxFileLinks)
	}
	if o.MaxFileLinks < 2 && !o.Trickle {
		// One link per node never reduces a balanced tree: boxo's builder
		// (and kubo with it) loops forever on a file of two chunks.
		return fmt.Errorf("%w: max-file-links must be at least 2 with the balanced layout, got %d", ErrBadOption, o.MaxFileLinks)
	}
	if o.MaxDirectoryLinks < 0 {
		return fmt.Errorf("%w: max-directory-links must be non-negative, got %d", ErrBadOption, o.MaxDirectoryLinks)
	}
	if f := o.MaxHAMTFanout; f < 8 || f > 1024 || f&(f-1) != 0 {
		return fmt.Errorf("%w: max-hamt-fanout must be a power of 2, between 8 and 1024 (got %d)", ErrBadOption, f)
	}
	if !verifcid.DefaultAllowlist.IsAllowed(o.HashFunc) {
		return fmt.Errorf("%w: hash function %q is not allowed for use in IPFS", ErrBadOption, mh.Codes[o.HashFunc])
	}
	if o.PreserveMode || o.PreserveMtime {
		if o.RawLeavesSet && o.RawLeaves {
			return fmt.Errorf("%w: raw-leaves can't be used with UnixFS metadata like mode or modification time", ErrBadOption)
		}
		o.RawLeaves, o.RawLeavesSet = false, true
	}
	if o.HashFunc != mh.SHA2_256 {
		switch o.CidVersion {
		case 0:
			return fmt.Errorf("%w: CIDv0 only supports sha2-256", ErrBadOption)
		case -1, 1:
			o.CidVersion = 1
		}
	} else if o.CidVersion < 0 {
		o.CidVersion = 0
	}
	if o.CidVersion != 0 && o.CidVersion != 1 {
		return fmt.Errorf("%w: unknown CID version: %d", ErrBadOption, o.CidVersion)
	}
	if o.CidVersion > 0 && !o.RawLeavesSet {
		o.RawLeaves = true
	}
	prefix, err := dag.PrefixForCidVersion(o.CidVersion)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadOption, err)
	}
	prefix.MhType, prefix.MhLength = o.HashFunc, -1
	o.builder = prefix
	if o.Inline {
		o.builder = cidutil.InlineBuilder{Builder: prefix, Limit: o.InlineLimit}
	}
	return nil
}

// CidBuilder returns the builder Resolve chose; nil before Resolve.
func (o *Options) CidBuilder() cid.Builder { return o.builder }

// CheckChunker reports whether s is a chunker kubo accepts, with kubo's
// message when it is not (too large, malformed, unknown).
func CheckChunker(s string) error {
	if _, err := chunker.FromString(bytes.NewReader(nil), s); err != nil {
		return fmt.Errorf("%w: chunker %q: %w", ErrBadOption, s, err)
	}
	return nil
}
