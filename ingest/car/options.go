package car

import (
	"context"

	cid "github.com/ipfs/go-cid"
)

// Safety limits. Every length read from the input is checked against them
// before anything is allocated for it.
const (
	// DefaultMaxBlockSize is 2 MiB, the limit of kubo's `block put` and
	// `dag import` without --allow-big-block, which is also the largest
	// block bitswap transfers
	// (https://specs.ipfs.tech/bitswap-protocol/#block-sizes): a larger
	// block could be stored but never fetched by other peers. A larger
	// block fails with ErrBlockTooLarge before its data is allocated.
	DefaultMaxBlockSize = 2 << 20

	// DefaultMaxHeaderSize bounds the CARv1 header, a DAG-CBOR map that
	// holds the version and the roots and is read into memory in one piece.
	// 32 KiB holds about 800 CIDv1 sha2-256 roots: more than any real CAR
	// names (kubo and go-car write one; Filecoin deal CARs a handful), and
	// a thousand times less than go-car's own default (32 MiB), which an
	// upload could otherwise make every request allocate. A longer header
	// fails with ErrHeaderTooLarge before allocation.
	DefaultMaxHeaderSize = 32 << 10

	// DefaultMaxSectionSize is the longest section (CID plus block) that
	// fits the default limits with a CID of up to 128 bytes (a CIDv1 with a
	// 64-byte digest takes 68). Import itself checks the block length, after
	// the CID is parsed, so that the error can name the CID; this constant
	// is for code that re-reads an accepted CAR with go-car
	// (car.MaxAllowedSectionSize).
	DefaultMaxSectionSize = DefaultMaxBlockSize + 128
)

// Option changes how Import reads a CAR. Options are applied in order; limits
// left at zero get their defaults afterwards.
type Option func(*options)

type options struct {
	maxBlockSize  int
	maxHeaderSize int
	has           func(ctx context.Context, c cid.Cid) (bool, error)
	get           func(ctx context.Context, c cid.Cid) ([]byte, error)
	checkComplete bool
	storeOnly     bool // CheckStored: there is no CAR, errors speak of the store only
	minRoots      int
	maxRoots      int // < 0: no upper bound
}

func applyOptions(opts ...Option) *options {
	o := &options{checkComplete: true, minRoots: 1, maxRoots: 1}
	for _, opt := range opts {
		opt(o)
	}
	if o.maxBlockSize <= 0 {
		o.maxBlockSize = DefaultMaxBlockSize
	}
	if o.maxHeaderSize <= 0 {
		o.maxHeaderSize = DefaultMaxHeaderSize
	}
	o.minRoots = max(o.minRoots, 0)
	return o
}

// MaxBlockSize sets the largest block accepted, in bytes. Default
// DefaultMaxBlockSize; 0 means the default.
func MaxBlockSize(n int) Option { return func(o *options) { o.maxBlockSize = n } }

// MaxHeaderSize sets the largest CARv1 header accepted, in bytes. Default
// DefaultMaxHeaderSize; 0 means the default.
func MaxHeaderSize(n int) Option { return func(o *options) { o.maxHeaderSize = n } }

// Has reports whether a block is already in the store. The completeness check
// calls it, in DAG order, for each reachable CID that the CAR does not
// contain; a block it reports present counts as complete, and its own links
// are not followed (its data is not at hand). Default: nothing is in the
// store.
func Has(f func(ctx context.Context, c cid.Cid) (bool, error)) Option {
	return func(o *options) { o.has = f }
}

// Get reads a block from the store. When set, the completeness check uses it
// instead of Has for each reachable CID that the CAR does not contain, and
// follows the links of the stored block too: a DAG then counts as complete
// only if every block below the roots is in the CAR or in the store, which
// a store holding blocks of earlier failed or partial uploads needs. A
// block Get does not find (an error for which ipld.IsNotFound is true) is
// missing; other errors end the check. Default: unset.
func Get(f func(ctx context.Context, c cid.Cid) ([]byte, error)) Option {
	return func(o *options) { o.get = f }
}

// CheckComplete turns the completeness check on or off. On (the default),
// every block reachable from the roots must be in the CAR or in the store
// (Has), so that a pin of the roots can complete; this needs the links of
// every reachable block, so only dag-pb, raw, dag-cbor and dag-json DAGs (and
// identity CIDs) can be checked. Turn it off for partial CARs that are
// imported without a pin (no-pin=true).
func CheckComplete(on bool) Option { return func(o *options) { o.checkComplete = on } }

// AllowRoots sets how many roots the CAR header may name: at least min and at
// most max, where a negative max means no upper bound. Default exactly one
// (1, 1). The REST layer passes (0, -1) for no-pin=true and (1, -1) for
// pin-roots=all.
func AllowRoots(min, max int) Option {
	return func(o *options) { o.minRoots, o.maxRoots = min, max }
}
