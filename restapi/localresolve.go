package restapi

import (
	"context"
	"fmt"

	"github.com/ipfs/boxo/ipld/merkledag"
	unixfsio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/ipfs/boxo/path"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	format "github.com/ipfs/go-ipld-format"

	"github.com/ingestd/ingestd/pinner"
)

// storeNodes is a read-only format.NodeGetter over the embedded store, for
// boxo's UnixFS path resolution (dag-pb and raw nodes).
type storeNodes struct {
	get func(ctx context.Context, c cid.Cid) ([]byte, error)
}

func (s storeNodes) Get(ctx context.Context, c cid.Cid) (format.Node, error) {
	data, err := s.get(ctx, c)
	if err != nil {
		return nil, err
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		return nil, err
	}
	switch c.Type() {
	case cid.DagProtobuf:
		return merkledag.DecodeProtobufBlock(b)
	case cid.Raw:
		return merkledag.DecodeRawBlock(b)
	}
	return nil, fmt.Errorf("cannot resolve through %s: codec 0x%x is not UnixFS", c, c.Type())
}

func (s storeNodes) GetMany(ctx context.Context, cids []cid.Cid) <-chan *format.NodeOption {
	out := make(chan *format.NodeOption, len(cids))
	for _, c := range cids {
		nd, err := s.Get(ctx, c)
		out <- &format.NodeOption{Node: nd, Err: err}
	}
	close(out)
	return out
}

// StoreResolve is the pinner's LocalResolve over the embedded store: an
// /ipfs/<cid>/sub/path is resolved hop by hop through UnixFS directories
// and HAMT shards with boxo's resolver, reading blocks from the store. A
// name that is not there, or a block the store lacks, is a bad request.
func StoreResolve(get func(ctx context.Context, c cid.Cid) ([]byte, error)) func(ctx context.Context, p string) (cid.Cid, error) {
	nodes := storeNodes{get: get}
	return func(ctx context.Context, p string) (cid.Cid, error) {
		ip, err := path.NewPath(p)
		if err != nil {
			return cid.Undef, fmt.Errorf("%w: %w", pinner.ErrBadRequest, err)
		}
		segs := ip.Segments()
		cur, err := cid.Decode(segs[1])
		if err != nil {
			return cid.Undef, fmt.Errorf("%w: %w", pinner.ErrBadRequest, err)
		}
		for names := segs[2:]; len(names) > 0; {
			nd, err := nodes.Get(ctx, cur)
			if err != nil {
				return cid.Undef, fmt.Errorf("%w: cannot read %s: %w", pinner.ErrBadRequest, cur, err)
			}
			lnk, rest, err := unixfsio.ResolveUnixfsOnce(ctx, nodes, nd, names)
			if err != nil {
				return cid.Undef, fmt.Errorf("%w: no link %q below %s: %w", pinner.ErrBadRequest, names[0], cur, err)
			}
			cur, names = lnk.Cid, rest
		}
		return cur, nil
	}
}
