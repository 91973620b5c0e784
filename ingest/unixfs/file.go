package unixfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	dag "github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	pool "github.com/libp2p/go-buffer-pool"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// node is what a parent needs of a child: its CID and cumulative DAG size.
// For leaves it also keeps the block until the leaf is linked (or becomes the
// root), because a root leaf may still be re-encoded with mode and mtime.
type node struct {
	cid      cid.Cid
	tsize    uint64 // encoded size of the node plus all its descendants
	fileSize uint64 // bytes of file content below this node
	block    []byte // encoded block; nil once handed to the sink
	leaf     bool   // block came from the buffer pool
	err      error
	ready    chan struct{}
}

// fileBuilder builds the DAG of one file. Chunking runs on a reader goroutine,
// leaves are encoded and hashed on the shared HashPool, and the layout
// (balanced or trickle) consumes the leaves in order on the calling goroutine
// and builds the parent nodes. The layout code is a port of boxo's
// importer/balanced and importer/trickle in which "read the next chunk and
// hash it" became "take the next leaf that the pool already hashed"; the
// shape of the DAG, and so every CID, is the same.
type fileBuilder struct {
	ctx      context.Context
	opts     *Options
	pool     *ingest.HashPool
	sink     ingest.Sink
	leafType pb.Data_DataType
	mode     os.FileMode
	mtime    time.Time

	pending chan *node // leaves in file order; its capacity bounds memory
	next    *node      // the leaf taken from pending but not used yet
	done    bool       // pending is closed and drained
	readErr error      // set before pending is closed
	// failed is why the layout cannot go on: the read error once pending
	// is closed, or the context's error. Once set, isDone is false and
	// nextLeaf returns it, so no layout can finish a file that was not
	// read to its end.
	failed error

	onRead func(n int) // progress callback, called as leaves are consumed
	// recycle: the sink copies blocks, so leaf buffers go back to the pool
	// after Put. Otherwise the sink owns them.
	recycle bool
	// eager: the sink takes concurrent Puts, so the hashing workers store
	// every leaf but the first as soon as it is hashed. The first stays with
	// the layout: a file of one chunk has it as root, and a root may still
	// be re-encoded with mode and mtime, when kubo stores only the new one.
	eager bool
	tasks sync.WaitGroup // this file's tasks on the pool
}

// window is how many leaves may be in flight per file beyond the pool's own
// queue: enough to keep every worker busy while the layout waits for the
// oldest one, small enough to keep memory at a few chunks per upload.
func (b *fileBuilder) window() int { return 2*b.pool.Workers() + 2 }

// buildFile imports r and returns the root of its DAG.
func buildFile(ctx context.Context, r io.Reader, o *Options, pool *ingest.HashPool, sink ingest.Sink, mode os.FileMode, mtime time.Time, onRead func(int)) (*node, error) {
	src := &source{r: r, done: ctx.Done()}
	spl, err := chunker.FromString(src, o.Chunker)
	if err != nil {
		return nil, fmt.Errorf("%w: chunker %q: %w", ErrBadOption, o.Chunker, err)
	}
	b := &fileBuilder{ctx: ctx, opts: o, pool: pool, sink: sink, leafType: ft.TFile, mode: mode, mtime: mtime, onRead: onRead}
	_, b.recycle = sink.(ingest.CopyingSink)
	_, b.eager = sink.(ingest.ConcurrentSink)
	if o.Trickle {
		b.leafType = ft.TRaw
	}
	b.pending = make(chan *node, b.window())
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		b.read(spl, src, stop)
	}()
	root, err := b.layout()
	close(stop)
	// Drain so that the reader can finish; a failed layout leaves leaves
	// behind that nobody links. Then wait for the pool's tasks of this file:
	// with eager stores they call the sink, which must be done with before
	// the import returns (the caller may close the store next).
	for range b.pending {
	}
	<-readerDone
	b.tasks.Wait()
	if err != nil {
		return nil, err
	}
	return root, nil
}

// source is the file's reader as the chunker sees it. It makes the first
// read error final: boxo's size splitter takes a bare io.ErrUnexpectedEOF
// for the end of the file and keeps the bytes read before it, and a chunker
// may read again after an error; source keeps the error, returns it to
// every later Read, and read reports it whatever the chunker made of it.
// It also stops reading once the import's context is done, so that a
// cancelled import ends at the next Read instead of after a whole chunk of
// a slow upload. A Read already blocked in r cannot be interrupted: the
// caller must close r (the REST layer closes the connection).
type source struct {
	r    io.Reader
	done <-chan struct{} // ctx.Done()
	err  error           // the first error other than io.EOF
}

// errCanceled marks a Read refused because the context is done; read then
// reports the context's error.
var errCanceled = errors.New("unixfs: import canceled")

func (s *source) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	select {
	case <-s.done:
		s.err = errCanceled
		return 0, s.err
	default:
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (b *fileBuilder) read(spl chunker.Splitter, src *source, stop <-chan struct{}) {
	defer close(b.pending)
	for i := 0; ; i++ {
		data, err := spl.NextBytes()
		if src.err != nil {
			// Whatever the chunker returned, the file was not read to its
			// end: its last bytes, if any, are not a chunk.
			b.readErr = src.err
			if src.err == errCanceled {
				b.readErr = b.ctx.Err()
			}
			return
		}
		if err == io.EOF || (err == nil && data == nil) {
			return
		}
		if err != nil {
			b.readErr = err
			return
		}
		n := &node{ready: make(chan struct{}), fileSize: uint64(len(data)), leaf: true}
		select {
		case b.pending <- n:
		case <-stop:
			return
		case <-b.ctx.Done():
			b.readErr = b.ctx.Err()
			return
		}
		eager := b.eager && i > 0
		b.tasks.Add(1)
		b.pool.Submit(func() {
			defer b.tasks.Done()
			b.encodeLeaf(n, data)
			if eager && n.err == nil {
				n.err = b.store(n)
			}
			close(n.ready)
		})
	}
}

// encodeLeaf runs on the pool.
func (b *fileBuilder) encodeLeaf(n *node, data []byte) {
	if b.opts.RawLeaves {
		n.cid, n.err = b.opts.builder.WithCodec(cid.Raw).Sum(data)
		n.block, n.tsize = data, uint64(len(data))
		if n.err != nil {
			n.err = fmt.Errorf("cannot hash leaf: %w", n.err)
		}
		return
	}
	n.block = encodeLeaf(pool.Get(encodedLeafLen(len(data)))[:0], data, b.leafType)
	pool.Put(data) // encodeLeaf copied it; the chunk buffer goes back to the chunker
	n.cid, n.err = b.opts.builder.Sum(n.block)
	n.tsize = uint64(len(n.block))
	if n.err != nil {
		n.err = fmt.Errorf("cannot hash leaf: %w", n.err)
	}
}

func (b *fileBuilder) protoLeaf(data []byte, mtime time.Time, mode os.FileMode) (*dag.ProtoNode, error) {
	fsn := ft.NewFSNode(b.leafType)
	fsn.SetData(data)
	if mode != 0 {
		fsn.SetMode(mode)
	}
	if !mtime.IsZero() {
		fsn.SetModTime(mtime)
	}
	enc, err := fsn.GetBytes()
	if err != nil {
		return nil, fmt.Errorf("cannot encode unixfs leaf: %w", err)
	}
	pn := dag.NodeWithData(enc)
	if err := pn.SetCidBuilder(b.opts.builder); err != nil {
		return nil, fmt.Errorf("cannot set cid builder: %w", err)
	}
	return pn, nil
}

// isDone reports whether the file has no more leaves; like boxo's
// DagBuilderHelper.Done it looks one leaf ahead. It is false, every time
// it is asked, after a read error or once the context is done, so the
// layout asks for the next leaf and nextLeaf returns the error: true
// therefore means the file was read to its end. (Returning true on a
// second call after an error let the balanced layout finish a truncated
// file when the error fell on a layout boundary, issue 11.)
func (b *fileBuilder) isDone() bool {
	if b.next != nil || b.failed != nil {
		return false
	}
	if b.done {
		return true
	}
	select {
	case n, ok := <-b.pending:
		if !ok {
			b.done = true
			if b.readErr != nil {
				b.failed = b.readErr
				return false
			}
			return true
		}
		b.next = n
		return false
	case <-b.ctx.Done():
		b.failed = b.ctx.Err()
		return false
	}
}

// nextLeaf returns the next leaf once the pool has hashed it.
func (b *fileBuilder) nextLeaf() (*node, error) {
	if b.isDone() {
		// The layouts ask only when isDone is false.
		return nil, errors.New("cannot read leaf: the file has no more leaves")
	}
	if b.failed != nil {
		return nil, b.failed
	}
	n := b.next
	b.next = nil
	select {
	case <-n.ready:
	case <-b.ctx.Done():
		return nil, b.ctx.Err()
	}
	if n.err != nil {
		return nil, n.err
	}
	if b.onRead != nil {
		b.onRead(int(n.fileSize))
	}
	return n, nil
}

// store hands a finished node's block to the sink.
// store hands n's block to the sink, once: the layout calls it for every
// node it links, the hashing workers for leaves when eager.
func (b *fileBuilder) store(n *node) error {
	if n.block == nil {
		return nil
	}
	blk := n.block
	n.block = nil
	if n.cid.Prefix().MhType == mh.IDENTITY {
		if b.recycle && n.leaf {
			pool.Put(blk)
		}
		// Identity CIDs carry their data; kubo stores nothing for them,
		// and refuses those over its limit.
		return checkIdentity(n.cid)
	}
	if err := b.sink.Put(b.ctx, n.cid, blk); err != nil {
		return fmt.Errorf("cannot store block %s: %w", n.cid, err)
	}
	if b.recycle && n.leaf {
		pool.Put(blk) // the sink copied it; leaf buffers came from the pool
	}
	return nil
}

// parent is a file node under construction (boxo's FSNodeOverDag).
type parent struct {
	pn  *dag.ProtoNode
	fsn *ft.FSNode
}

func (b *fileBuilder) newParent() *parent {
	pn := new(dag.ProtoNode)
	_ = pn.SetCidBuilder(b.opts.builder) // validated by Resolve
	return &parent{pn: pn, fsn: ft.NewFSNode(ft.TFile)}
}

func (b *fileBuilder) addChild(p *parent, c *node) error {
	if err := p.pn.AddRawLink("", &ipld.Link{Cid: c.cid, Size: c.tsize}); err != nil {
		return fmt.Errorf("cannot link %s: %w", c.cid, err)
	}
	p.fsn.AddBlockSize(c.fileSize)
	return b.store(c)
}

func (b *fileBuilder) commit(p *parent, attrs bool) (*node, error) {
	if attrs {
		if b.mode != 0 {
			p.fsn.SetMode(b.mode)
		}
		if !b.mtime.IsZero() {
			p.fsn.SetModTime(b.mtime)
		}
	}
	enc, err := p.fsn.GetBytes()
	if err != nil {
		return nil, fmt.Errorf("cannot encode unixfs node: %w", err)
	}
	p.pn.SetData(enc)
	size, err := p.pn.Size()
	if err != nil {
		return nil, fmt.Errorf("cannot size node: %w", err)
	}
	return &node{cid: p.pn.Cid(), block: p.pn.RawData(), tsize: size, fileSize: p.fsn.FileSize()}, nil
}

func (b *fileBuilder) hasAttrs() bool { return b.mode != 0 || !b.mtime.IsZero() }

func (b *fileBuilder) layout() (*node, error) {
	var root *node
	var err error
	if b.opts.Trickle {
		root, err = b.trickle()
	} else {
		root, err = b.balanced()
	}
	if err != nil {
		return nil, err
	}
	if err := b.store(root); err != nil {
		return nil, err
	}
	return root, nil
}

// balanced is boxo's importer/balanced.Layout.
func (b *fileBuilder) balanced() (*node, error) {
	if b.isDone() {
		return b.leafRoot(&node{fileSize: 0})
	}
	root, err := b.nextLeaf()
	if err != nil {
		return nil, err
	}
	if b.isDone() {
		return b.leafRoot(root)
	}
	for depth := 1; !b.isDone(); depth++ {
		p := b.newParent()
		if err := b.addChild(p, root); err != nil {
			return nil, err
		}
		if root, err = b.fillBalanced(p, depth); err != nil {
			return nil, err
		}
	}
	if b.hasAttrs() {
		return b.reattr(root)
	}
	return root, nil
}

// leafRoot handles a file of at most one chunk, whose root is its leaf.
// With mode or mtime the leaf is encoded again with them, as boxo does in
// SetFileAttributes; an empty file gets an empty leaf.
func (b *fileBuilder) leafRoot(leaf *node) (*node, error) {
	if leaf.cid.Defined() && !b.hasAttrs() {
		return leaf, nil
	}
	if b.opts.RawLeaves {
		if leaf.cid.Defined() {
			return leaf, nil // raw nodes carry no attributes
		}
		n := &node{}
		b.encodeLeaf(n, []byte{})
		n.leaf = false
		return n, n.err
	}
	var data []byte
	if leaf.block != nil {
		pn, err := dag.DecodeProtobuf(leaf.block)
		if err != nil {
			return nil, fmt.Errorf("cannot decode leaf: %w", err)
		}
		fsn, err := ft.FSNodeFromBytes(pn.Data())
		if err != nil {
			return nil, fmt.Errorf("cannot decode leaf: %w", err)
		}
		data = fsn.Data()
	}
	pn, err := b.protoLeaf(data, b.mtime, b.mode)
	if err != nil {
		return nil, err
	}
	return &node{cid: pn.Cid(), block: pn.RawData(), tsize: uint64(len(pn.RawData())), fileSize: uint64(len(data))}, nil
}

// reattr re-encodes the root with mode and mtime. Only the root carries them.
func (b *fileBuilder) reattr(root *node) (*node, error) {
	pn, err := dag.DecodeProtobuf(root.block)
	if err != nil {
		return nil, fmt.Errorf("cannot decode root: %w", err)
	}
	fsn, err := ft.FSNodeFromBytes(pn.Data())
	if err != nil {
		return nil, fmt.Errorf("cannot decode root: %w", err)
	}
	_ = pn.SetCidBuilder(b.opts.builder)
	return b.commit(&parent{pn: pn, fsn: fsn}, true)
}

func (b *fileBuilder) fillBalanced(p *parent, depth int) (*node, error) {
	for p.fsn.NumChildren() < b.opts.MaxFileLinks && !b.isDone() {
		var child *node
		var err error
		if depth == 1 {
			child, err = b.nextLeaf()
		} else {
			child, err = b.fillBalanced(b.newParent(), depth-1)
		}
		if err != nil {
			return nil, err
		}
		if err := b.addChild(p, child); err != nil {
			return nil, err
		}
	}
	return b.commit(p, false)
}

// trickleDepthRepeat is boxo's importer/trickle depthRepeat.
const trickleDepthRepeat = 4

// trickle is boxo's importer/trickle.Layout.
func (b *fileBuilder) trickle() (*node, error) {
	root, err := b.fillTrickle(b.newParent(), -1, true)
	if err != nil {
		return nil, err
	}
	return root, nil
}

func (b *fileBuilder) fillTrickle(p *parent, maxDepth int, isRoot bool) (*node, error) {
	for p.fsn.NumChildren() < b.opts.MaxFileLinks && !b.isDone() {
		leaf, err := b.nextLeaf()
		if err != nil {
			return nil, err
		}
		if err := b.addChild(p, leaf); err != nil {
			return nil, err
		}
	}
	for depth := 1; maxDepth == -1 || depth < maxDepth; depth++ {
		if b.isDone() {
			break
		}
		for r := 0; r < trickleDepthRepeat && !b.isDone(); r++ {
			child, err := b.fillTrickle(b.newParent(), depth, false)
			if err != nil {
				return nil, err
			}
			if err := b.addChild(p, child); err != nil {
				return nil, err
			}
		}
	}
	return b.commit(p, isRoot && b.hasAttrs())
}
