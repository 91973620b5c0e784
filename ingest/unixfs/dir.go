package unixfs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// ErrBadEntry is wrapped when the entries of an upload contradict each other
// (a file where a directory should be, a name used twice).
var ErrBadEntry = errors.New("unixfs: bad entry")

// ref stands for an already built child when a boxo Directory needs an
// ipld.Node: boxo reads only its CID and size.
type ref struct {
	c    cid.Cid
	size uint64
}

var _ ipld.Node = ref{}

func (r ref) RawData() []byte          { return nil }
func (r ref) Cid() cid.Cid             { return r.c }
func (r ref) String() string           { return r.c.String() }
func (r ref) Loggable() map[string]any { return map[string]any{"cid": r.c} }
func (r ref) Resolve([]string) (any, []string, error) {
	return nil, nil, errors.New("ref: not resolvable")
}
func (r ref) Tree(string, int) []string { return nil }
func (r ref) ResolveLink([]string) (*ipld.Link, []string, error) {
	return nil, nil, errors.New("ref: not resolvable")
}
func (r ref) Copy() ipld.Node               { return r }
func (r ref) Links() []*ipld.Link           { return nil }
func (r ref) Stat() (*ipld.NodeStat, error) { return &ipld.NodeStat{}, nil }
func (r ref) Size() (uint64, error)         { return r.size, nil }

// sinkDAG is the ipld.DAGService boxo's directory code writes HAMT shards
// to. It forwards real nodes to the sink and ignores refs, whose blocks were
// stored when their files were built. Nothing is ever read back.
type sinkDAG struct{ sink ingest.Sink }

var errNoRead = errors.New("unixfs: directory builder does not read blocks back")

func (s sinkDAG) Add(ctx context.Context, n ipld.Node) error {
	if _, ok := n.(ref); ok {
		return nil
	}
	return putNode(ctx, s.sink, n)
}

func (s sinkDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		if err := s.Add(ctx, n); err != nil {
			return err
		}
	}
	return nil
}
func (sinkDAG) Get(context.Context, cid.Cid) (ipld.Node, error) { return nil, errNoRead }
func (sinkDAG) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption {
	ch := make(chan *ipld.NodeOption, 1)
	ch <- &ipld.NodeOption{Err: errNoRead}
	close(ch)
	return ch
}
func (sinkDAG) Remove(context.Context, cid.Cid) error       { return nil }
func (sinkDAG) RemoveMany(context.Context, []cid.Cid) error { return nil }

func putNode(ctx context.Context, sink ingest.Sink, n blocks.Block) error {
	c := n.Cid()
	if c.Prefix().MhType == mh.IDENTITY {
		return checkIdentity(c)
	}
	if err := sink.Put(ctx, c, n.RawData()); err != nil {
		return fmt.Errorf("cannot store block %s: %w", c, err)
	}
	return nil
}

// build encodes d and, first, every directory below it, emitting one output
// per directory with children before parents, in name order, as kubo's
// Adder.outputDirs does.
func (d *dir) build(ctx context.Context, o *Options, sink ingest.Sink, emit func(Output) error) (cid.Cid, uint64, error) {
	path := d.path
	if err := ctx.Err(); err != nil {
		return cid.Undef, 0, fmt.Errorf("cannot build directory %q: %w", path, err)
	}
	opts := []uio.DirectoryOption{
		uio.WithCidBuilder(o.builder),
		uio.WithMaxLinks(o.MaxDirectoryLinks),
		uio.WithMaxHAMTFanout(o.MaxHAMTFanout),
		uio.WithSizeEstimationMode(o.SizeEstimation),
	}
	if d.mode != 0 || !d.mtime.IsZero() {
		opts = append(opts, uio.WithStat(d.mode, d.mtime))
	}
	ud, err := uio.NewDirectory(sinkDAG{sink}, opts...)
	if err != nil {
		return cid.Undef, 0, fmt.Errorf("cannot create directory %q: %w", path, err)
	}
	ud.SetHAMTShardingSize(o.HAMTThreshold)
	subs := make([]*dirChild, 0, len(d.children))
	for _, c := range d.children {
		if c.sub != nil {
			subs = append(subs, c)
		}
	}
	slices.SortFunc(subs, func(a, b *dirChild) int { return strings.Compare(a.name, b.name) })
	for _, c := range subs {
		if c.cid, c.tsize, err = c.sub.build(ctx, o, sink, emit); err != nil {
			return cid.Undef, 0, err
		}
		c.sub = nil // let the subtree go
	}
	// Children are added in upload order, as MFS does; the encoding sorts
	// links, and the HAMT does not depend on the order.
	for i, c := range d.children {
		if i%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return cid.Undef, 0, fmt.Errorf("cannot build directory %q: %w", path, err)
			}
		}
		if err := ud.AddChild(ctx, c.name, ref{c.cid, c.tsize}); err != nil {
			return cid.Undef, 0, fmt.Errorf("cannot add %q to directory %q: %w", c.name, path, err)
		}
	}
	n, err := ud.GetNode()
	if err != nil {
		return cid.Undef, 0, fmt.Errorf("cannot encode directory %q: %w", path, err)
	}
	if err := putNode(ctx, sink, n); err != nil {
		return cid.Undef, 0, err
	}
	size, err := n.Size()
	if err != nil {
		return cid.Undef, 0, fmt.Errorf("cannot size directory %q: %w", path, err)
	}
	if err := emit(Output{Name: path, Cid: n.Cid(), Size: size}); err != nil {
		return cid.Undef, 0, err
	}
	return n.Cid(), size, nil
}

func joinName(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// checkIdentity fails for an identity CID that kubo refuses: with
// hash=identity, `ipfs add` fails on the first block whose CID would carry
// more than ingest.MaxIdentityDigestSize bytes (boxo's block service checks
// every block with verifcid); it does not chunk smaller to fit.
func checkIdentity(c cid.Cid) error {
	if err := ingest.CheckCID(c); err != nil {
		return fmt.Errorf("cannot store block %s: with hash=identity a block of more than %d bytes cannot be a CID (kubo refuses it): %w: %w",
			ingest.ShortCID(c), ingest.MaxIdentityDigestSize, ErrBadOption, ingest.ErrCIDRefused)
	}
	return nil
}
