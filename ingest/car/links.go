package car

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	ipld "github.com/ipfs/go-ipld-format"

	ft "github.com/ipfs/boxo/ipld/unixfs"
	cid "github.com/ipfs/go-cid"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/codec/dagjson"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/multiformats/go-multicodec"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// errNoDecoder marks a block whose codec ingestd cannot decode.
var errNoDecoder = errors.New("no decoder")

// decodeLinks returns the links of a block, decoded with the codec of its
// CID, and, if fileSize is set and the block is a dag-pb UnixFS node, the
// size of the file it is the root of. It runs on the HashPool, after the
// block has been verified. The codecs are the ones kubo decodes with; only
// the node they would build is left out (see linkCollector).
func decodeLinks(c cid.Cid, data []byte, fileSize bool) ([]cid.Cid, uint64, error) {
	var lc linkCollector
	var err error
	switch c.Type() {
	case cid.Raw:
		return nil, 0, nil
	case cid.DagProtobuf:
		if fileSize {
			return decodeDagPB(data)
		}
		err = dagpb.DecodeBytes(lc.assembler(), data)
	case cid.DagCBOR:
		if err = checkCBORLengths(data); err == nil {
			err = dagcbor.Decode(lc.assembler(), bytes.NewReader(data))
		}
	case cid.DagJSON:
		err = dagjson.Decode(lc.assembler(), bytes.NewReader(data))
	default:
		return nil, 0, errNoDecoder
	}
	if err != nil {
		return nil, 0, err
	}
	return lc.links, 0, nil
}

// decodeDagPB decodes a dag-pb node with go-codec-dagpb's own node type,
// for the root, whose UnixFS data gives Result.RootSize.
func decodeDagPB(data []byte) ([]cid.Cid, uint64, error) {
	nb := dagpb.Type.PBNode.NewBuilder()
	if err := dagpb.DecodeBytes(nb, data); err != nil {
		return nil, 0, err
	}
	n := nb.Build().(dagpb.PBNode)
	links := make([]cid.Cid, 0, n.FieldLinks().Length())
	for it := n.FieldLinks().Iterator(); !it.Done(); {
		_, l := it.Next()
		cl, ok := l.FieldHash().Link().(cidlink.Link)
		if !ok {
			return nil, 0, errNotLink
		}
		links = append(links, cl.Cid)
	}
	var size uint64
	if n.FieldData().Exists() {
		if fsn, err := ft.FSNodeFromBytes(n.FieldData().Must().Bytes()); err == nil {
			size = fsn.FileSize()
		}
	}
	return links, size, nil
}

// graph is what the completeness check keeps of each block of the CAR: its
// codec and its links, never its data. That is about 100 bytes per block
// plus 50 per link.
type graph struct {
	blocks map[string]*node // by multihash, as blockstores key blocks
	seen   map[string]struct{}
}

type node struct {
	codec   uint64
	links   []cid.Cid
	err     error // why the links are unknown; reported only if the block is reachable
	visited bool
}

func newGraph() *graph { return &graph{blocks: make(map[string]*node)} }

// add records a verified block. A multihash that comes again keeps its first
// entry, unless that one was raw: raw bytes have no links under any codec.
func (g *graph) add(c cid.Cid, links []cid.Cid, err error) {
	key := string(c.Hash())
	if old, ok := g.blocks[key]; ok && old.codec != cid.Raw {
		return
	}
	g.blocks[key] = &node{codec: c.Type(), links: links, err: err}
}

type edge struct{ c, from cid.Cid }

// check walks the DAG from the roots, depth first in link order, and returns
// an error for the first reachable block that is neither in the CAR nor in
// the store, or whose links cannot be decoded.
func (g *graph) check(ctx context.Context, roots []cid.Cid, o *options) error {
	stack := make([]edge, 0, len(roots))
	for i := len(roots) - 1; i >= 0; i-- {
		stack = append(stack, edge{c: roots[i]})
	}
	for steps := 0; len(stack) > 0; steps++ {
		if steps%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("cannot check completeness: %w", err)
			}
		}
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		links, err := g.visit(ctx, e, o)
		if err != nil {
			return err
		}
		for i := len(links) - 1; i >= 0; i-- {
			stack = append(stack, edge{c: links[i], from: e.c})
		}
	}
	return nil
}

// visit returns the links of e.c that still have to be walked: none if it
// was walked before, is raw, or is only in the store.
func (g *graph) visit(ctx context.Context, e edge, o *options) ([]cid.Cid, error) {
	c := e.c
	if err := ingest.CheckCID(c); err != nil {
		// A root, or a link of a block read from the store or of an
		// identity block: the links of the CAR's blocks were checked on
		// the pool already.
		return nil, linkError(e, err)
	}
	p := c.Prefix()
	if p.MhType == mh.IDENTITY {
		// Present by definition; the block is the digest, and may link on.
		if g.seenBefore(c) {
			return nil, nil
		}
		h := c.Hash()
		links, _, err := decodeLinks(c, h[len(h)-p.MhLength:], false)
		if err != nil {
			return nil, linkError(e, err)
		}
		return links, nil
	}
	n, ok := g.blocks[string(c.Hash())]
	if !ok {
		if g.seenBefore(c) {
			return nil, nil
		}
		if o.get != nil {
			data, err := o.get(ctx, c)
			switch {
			case err == nil:
				if p.Codec == cid.Raw {
					return nil, nil
				}
				links, _, err := decodeLinks(c, data, false)
				if err != nil {
					return nil, linkError(e, err)
				}
				return links, nil
			case !ipld.IsNotFound(err):
				return nil, fmt.Errorf("cannot check completeness: cannot read block %s from the store: %w", c, err)
			}
		} else if has := o.has; has != nil {
			ok, err := has(ctx, c)
			if err != nil {
				return nil, fmt.Errorf("cannot check completeness: cannot check whether block %s is in the store: %w", c, err)
			}
			if ok {
				return nil, nil
			}
		}
		if o.storeOnly {
			return nil, fmt.Errorf("cannot check completeness: %s is not in the store: %w", describe(e), ErrMissingBlock)
		}
		return nil, fmt.Errorf("cannot check completeness: %s is neither in the CAR nor in the store (use no-pin=true for a partial CAR): %w", describe(e), ErrMissingBlock)
	}
	if n.visited || p.Codec == cid.Raw {
		return nil, nil
	}
	n.visited = true
	if n.codec != p.Codec {
		return nil, fmt.Errorf("cannot check completeness: %s is in the CAR only as %s, so its links as %s are unknown: %w", describe(e), codecName(n.codec), codecName(p.Codec), ErrMissingBlock)
	}
	if n.err != nil {
		return nil, linkError(e, n.err)
	}
	return n.links, nil
}

func (g *graph) seenBefore(c cid.Cid) bool {
	if g.seen == nil {
		g.seen = make(map[string]struct{})
	}
	k := c.KeyString()
	if _, ok := g.seen[k]; ok {
		return true
	}
	g.seen[k] = struct{}{}
	return false
}

func linkError(e edge, err error) error {
	if errors.Is(err, ingest.ErrCIDRefused) {
		return fmt.Errorf("cannot check completeness: %s: %w: %w", describe(e), err, ErrUnsupportedHash)
	}
	if errors.Is(err, errNoDecoder) {
		return fmt.Errorf("cannot check completeness: %s has codec %s, which ingestd cannot decode; use no-pin=true: %w", describe(e), codecName(e.c.Type()), ErrUnsupportedCodec)
	}
	return fmt.Errorf("cannot check completeness: %s does not decode as %s: %v: %w", describe(e), codecName(e.c.Type()), err, ErrMalformed)
}

func describe(e edge) string {
	if !e.from.Defined() {
		return "root " + e.c.String()
	}
	return fmt.Sprintf("block %s (linked from %s)", e.c, e.from)
}

// codecName is "git-raw (0x78)".
func codecName(code uint64) string {
	return fmt.Sprintf("%s (0x%x)", multicodec.Code(code), code)
}
