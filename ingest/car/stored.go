package car

import (
	"context"
	"errors"
	"fmt"

	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// CheckStored reports whether the DAG below root is complete in a store:
// every block reachable from root (only root itself when !recursive) can
// be read with get and, for dag-pb, dag-cbor and dag-json blocks, decoded
// for its links. It returns nil, or an error wrapping ErrMissingBlock that
// names the first missing block and what links to it (ErrMalformed or
// ErrUnsupportedCodec for a block whose links cannot be read). The
// embedded pinner uses it: a pin counts as pinned only once this holds.
//
// The walk is depth first and visits each block once; its memory is the
// set of visited CIDs.
func CheckStored(ctx context.Context, root cid.Cid, get func(ctx context.Context, c cid.Cid) ([]byte, error), recursive bool) error {
	if err := ingest.CheckCID(root); err != nil {
		return fmt.Errorf("cannot check completeness: root: %w: %w", err, ErrUnsupportedHash)
	}
	if !recursive {
		if root.Prefix().MhType == mh.IDENTITY {
			return nil
		}
		_, err := get(ctx, root)
		if ipld.IsNotFound(err) {
			return fmt.Errorf("cannot check completeness: root %s is not in the store: %w", root, ErrMissingBlock)
		}
		if err != nil {
			return fmt.Errorf("cannot check completeness: cannot read block %s from the store: %w", root, err)
		}
		return nil
	}
	o := applyOptions(Get(get))
	o.storeOnly = true
	return newGraph().check(ctx, []cid.Cid{root}, o)
}

// Links returns the CIDs a block links to, decoded with the codec of its
// CID as kubo decodes it (dag-pb, dag-cbor, dag-json; raw blocks have
// none). It is the link decoder of the embedded store's garbage
// collection. A block of another codec is ErrUnsupportedCodec.
func Links(c cid.Cid, data []byte) ([]cid.Cid, error) {
	links, _, err := decodeLinks(c, data, false)
	if errors.Is(err, errNoDecoder) {
		return nil, fmt.Errorf("cannot decode the links of %s: %w", c, ErrUnsupportedCodec)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot decode the links of %s: %v: %w", c, err, ErrMalformed)
	}
	return links, nil
}
