package car

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/boxo/verifcid"
	cid "github.com/ipfs/go-cid"
	bufpool "github.com/libp2p/go-buffer-pool"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// Result describes an imported CAR.
type Result struct {
	Roots    []cid.Cid // as named by the header, in its order
	Blocks   int       // sections read, duplicates included
	Bytes    uint64    // sum of the block data lengths (IPFS Cluster's "bytes")
	RootSize uint64    // UnixFS file size of Roots[0] if that block is in the CAR and is a dag-pb UnixFS node, else 0 (IPFS Cluster's "size")
}

// maxCIDSize is how much of a section is looked at to parse its CID. The
// longest CID kubo accepts (verifcid: a 128-byte digest) takes about 150.
const maxCIDSize = 256

// Import reads a CARv1 or CARv2 from r, verifies every block against its CID
// on pool and hands the blocks to sink, each only after it has been
// verified: in file order, or, when sink is an ingest.ConcurrentSink, from
// the verifying workers in whatever order they finish. Identity blocks are
// verified but not stored, as in kubo. It returns once the whole stream,
// including a CARv2 index, has been read and, unless CheckComplete(false),
// the DAG below the roots has been found complete, and never while a worker
// is still calling sink. pool and sink must not be nil.
//
// On error some blocks may already be in the sink (with a ConcurrentSink
// also blocks after the bad one); they are not pinned.
// Every error for a bad CAR wraps one of the Err* sentinels and names the
// section, offset or CID at fault.
//
// Memory: at most 2×pool.Workers()+2 blocks are in flight; with the
// completeness check, about 100 bytes per block and 50 per link are kept
// until the end.
func Import(ctx context.Context, r io.Reader, pool *ingest.HashPool, sink ingest.Sink, opts ...Option) (*Result, error) {
	o := applyOptions(opts...)
	if o.maxRoots >= 0 && o.maxRoots < o.minRoots {
		return nil, fmt.Errorf("cannot import CAR: AllowRoots(%d, %d) allows no number of roots", o.minRoots, o.maxRoots)
	}
	im := &importer{ctx: ctx, o: o, pool: pool, sink: sink, in: newInput(ctx, r)}
	_, im.recycle = sink.(ingest.CopyingSink)
	_, im.eager = sink.(ingest.ConcurrentSink)
	// The reader goroutine is done with the input when stream returns.
	defer im.in.release()

	roots, err := im.readHeaders()
	if err != nil {
		return nil, err
	}
	if err := checkRoots(roots); err != nil {
		return nil, err
	}
	if err := o.checkRoots(len(roots)); err != nil {
		return nil, err
	}
	res := &Result{Roots: roots}
	if len(roots) > 0 {
		im.root = roots[0]
	}
	if o.checkComplete {
		im.graph = newGraph()
	}
	if err := im.stream(res); err != nil {
		return nil, err
	}
	if im.graph != nil {
		if err := im.graph.check(ctx, roots, o); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (o *options) checkRoots(n int) error {
	switch {
	case n < o.minRoots && n == 0:
		return fmt.Errorf("cannot import CAR: CAR has no roots, so there is nothing to pin (use no-pin=true to import its blocks without a pin): %w", ErrBadRoots)
	case n < o.minRoots:
		return fmt.Errorf("cannot import CAR: CAR has %d roots; at least %d are required: %w", n, o.minRoots, ErrBadRoots)
	case o.maxRoots >= 0 && n > o.maxRoots && o.maxRoots == 1:
		return fmt.Errorf("cannot import CAR: CAR has %d roots; only single-root CARs are pinned (use no-pin=true for partial CARs, or pin-roots=all): %w", n, ErrBadRoots)
	case o.maxRoots >= 0 && n > o.maxRoots:
		return fmt.Errorf("cannot import CAR: CAR has %d roots; at most %d are allowed: %w", n, o.maxRoots, ErrBadRoots)
	}
	return nil
}

// importer runs one Import: a reader goroutine parses sections and submits
// each block to the HashPool; the calling goroutine takes the blocks in file
// order as the pool finishes them, records their links and stores them. This
// is the shape of ingest/unixfs's file builder.
type importer struct {
	ctx   context.Context
	o     *options
	pool  *ingest.HashPool
	sink  ingest.Sink
	in    *input
	root  cid.Cid // first root; its block gives Result.RootSize
	graph *graph  // nil without the completeness check

	dataSize    uint64 // CARv2 data payload size
	indexOffset uint64 // CARv2 index offset; 0 if none

	pending chan *block // blocks in file order; its capacity bounds memory
	readErr error       // set before pending is closed

	// recycle: the sink copies blocks, so block buffers go back to the
	// buffer pool after Put; otherwise the sink owns them.
	recycle bool
	// eager: the sink takes concurrent Puts, so the workers store each
	// block once verified, instead of the consuming goroutine one by one.
	eager bool
	tasks sync.WaitGroup // this import's tasks on the pool
}

// block is one section on its way from the reader to the sink.
type block struct {
	cid     cid.Cid
	data    []byte
	section int    // 1-based, for messages
	offset  uint64 // of the section in the stream
	isRoot  bool

	// Set on the pool before ready is closed.
	err      error
	links    []cid.Cid
	linksErr error
	rootSize uint64
	stored   bool // handed to the sink by the worker (eager)
	ready    chan struct{}
}

// window is how many blocks may be in flight beyond the pool's own queue:
// enough to keep every worker busy while the consumer waits for the oldest,
// as in ingest/unixfs.
func (im *importer) window() int { return 2*im.pool.Workers() + 2 }

func (im *importer) stream(res *Result) error {
	im.pending = make(chan *block, im.window())
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		im.read(stop)
	}()
	err := im.consume(res)
	close(stop)
	// Drain so that the reader can finish, then wait for the pool's tasks
	// of this import: with eager stores they call the sink, which must be
	// done with before the import returns (the caller may close the store
	// next). Blocks left here are not stored by the consumer.
	for range im.pending {
	}
	<-readerDone
	im.tasks.Wait()
	return err
}

func (im *importer) consume(res *Result) error {
	rootSeen := false
	for {
		var b *block
		var ok bool
		select {
		case b, ok = <-im.pending:
		case <-im.ctx.Done():
			return fmt.Errorf("cannot import CAR: %w", im.ctx.Err())
		}
		if !ok {
			return im.readErr
		}
		select {
		case <-b.ready:
		case <-im.ctx.Done():
			return fmt.Errorf("cannot import CAR: %w", im.ctx.Err())
		}
		if b.err != nil {
			return b.err
		}
		res.Blocks++
		res.Bytes += uint64(len(b.data))
		if b.isRoot && !rootSeen {
			res.RootSize, rootSeen = b.rootSize, true
		}
		if im.graph != nil {
			im.graph.add(b.cid, b.links, b.linksErr)
		}
		data := b.data
		b.data = nil // the sink owns it now, or the pool once a copying sink returns
		if b.stored {
			if im.recycle {
				bufpool.Put(data)
			}
			continue
		}
		if b.cid.Prefix().MhType == mh.IDENTITY {
			bufpool.Put(data)
			continue // identity CIDs carry their data; kubo stores nothing for them
		}
		if err := im.sink.Put(im.ctx, b.cid, data); err != nil {
			return fmt.Errorf("cannot store block %s: %w", b.cid, err)
		}
		if im.recycle {
			bufpool.Put(data)
		}
	}
}

// read runs on its own goroutine: it only parses, and leaves hashing to the
// pool.
func (im *importer) read(stop <-chan struct{}) {
	defer close(im.pending)
	for n := 1; ; n++ {
		b, err := im.readSection(n)
		if err == io.EOF {
			im.readErr = im.readTail()
			return
		}
		if err != nil {
			im.readErr = err
			return
		}
		select {
		case im.pending <- b:
		case <-stop:
			return
		case <-im.ctx.Done():
			im.readErr = fmt.Errorf("cannot import CAR: %w", im.ctx.Err())
			return
		}
		im.tasks.Add(1)
		im.pool.Submit(func() { defer im.tasks.Done(); im.verify(b) })
	}
}

// readSection reads section n, or returns io.EOF at the end of the sections.
func (im *importer) readSection(n int) (*block, error) {
	in := im.in
	start := in.pos
	if in.v2 && start == in.end {
		return nil, io.EOF
	}
	size, err := in.uvarint()
	if err == io.EOF {
		if in.v2 {
			return nil, fmt.Errorf("cannot read section %d: the stream ends at offset %d, before the end of the CARv2 data payload at offset %d: %w: %w", n, start, in.end, ErrMalformed, io.ErrUnexpectedEOF)
		}
		return nil, io.EOF
	}
	if err != nil {
		return nil, in.fail(fmt.Sprintf("length of section %d at offset %d", n, start), err)
	}
	if size == 0 {
		return nil, fmt.Errorf("cannot read section %d at offset %d: its length is 0: %w", n, start, ErrMalformed)
	}
	if in.v2 && size > in.payloadLeft() {
		return nil, fmt.Errorf("cannot read section %d at offset %d: its %d bytes run past the end of the CARv2 data payload at offset %d: %w", n, start, size, in.end, ErrMalformed)
	}
	head, peekErr := in.br.Peek(int(min(size, maxCIDSize)))
	cidLen, c, err := cid.CidFromBytes(head)
	if err != nil {
		if peekErr != nil {
			return nil, in.fail(fmt.Sprintf("CID of section %d at offset %d", n, start), peekErr)
		}
		return nil, fmt.Errorf("cannot read CID of section %d at offset %d: %v: %w", n, start, err, ErrMalformed)
	}
	_ = in.skip(uint64(cidLen)) // buffered by Peek
	dataLen := size - uint64(cidLen)
	if dataLen > uint64(im.o.maxBlockSize) {
		return nil, fmt.Errorf("cannot read block %s (section %d at offset %d): block is %d bytes, over the limit of %d: %w", c, n, start, dataLen, im.o.maxBlockSize, ErrBlockTooLarge)
	}
	data, err := in.readData(int(dataLen))
	if err != nil {
		return nil, in.fail(fmt.Sprintf("block %s (section %d at offset %d, %d bytes)", c, n, start, dataLen), err)
	}
	return &block{
		cid:     c,
		data:    data,
		section: n,
		offset:  start,
		isRoot:  im.root.Defined() && sameBlock(c, im.root),
		ready:   make(chan struct{}),
	}, nil
}

// sameBlock reports whether a and b name the same bytes under the same codec
// (a CIDv0 and its CIDv1 do).
func sameBlock(a, b cid.Cid) bool {
	return a.Type() == b.Type() && bytes.Equal(a.Hash(), b.Hash())
}

// verify runs on the pool.
func (im *importer) verify(b *block) {
	defer close(b.ready)
	if err := checkHash(b.cid, b.data); err != nil {
		b.err = fmt.Errorf("cannot verify block %s (section %d at offset %d): %w", b.cid, b.section, b.offset, err)
		return
	}
	switch {
	case im.graph != nil:
		b.links, b.rootSize, b.linksErr = decodeLinks(b.cid, b.data, b.isRoot)
		if b.linksErr == nil {
			// Refused here, on the pool, and not only when the walk meets
			// them: the graph keeps every link until the end, and an
			// identity link can carry most of a 2 MiB block.
			b.linksErr = checkLinks(b.links)
		}
		if b.linksErr != nil {
			b.links = nil
		}
	case b.isRoot && b.cid.Type() == cid.DagProtobuf:
		_, b.rootSize, _ = decodeDagPB(b.data)
	}
	if im.eager && b.cid.Prefix().MhType != mh.IDENTITY {
		if err := im.sink.Put(im.ctx, b.cid, b.data); err != nil {
			b.err = fmt.Errorf("cannot store block %s: %w", b.cid, err)
			return
		}
		b.stored = true
	}
}

// checkRoots refuses a header that names a CID kubo refuses: kubo's
// `dag import` reports a pin error for such a root (an identity CID over
// ingest.MaxIdentityDigestSize, say), and a pin of it could never be
// fetched or addressed.
func checkRoots(roots []cid.Cid) error {
	for i, r := range roots {
		if err := ingest.CheckCID(r); err != nil {
			return fmt.Errorf("cannot accept root %d of the CAR header: %w: %w", i+1, err, ErrUnsupportedHash)
		}
	}
	return nil
}

// checkLinks refuses a block that links to a CID kubo refuses; the error
// counts only if the roots reach the block (see graph.visit).
func checkLinks(links []cid.Cid) error {
	for _, l := range links {
		if err := ingest.CheckCID(l); err != nil {
			return err
		}
	}
	return nil
}

// checkHash verifies data against c with c's own hash function, after
// checking that kubo accepts that function and digest length.
func checkHash(c cid.Cid, data []byte) error {
	p := c.Prefix()
	if err := verifcid.ValidateCid(verifcid.DefaultAllowlist, c); err != nil {
		return fmt.Errorf("hash %s with a %d-byte digest is refused by kubo: %v: %w: %w", hashName(p.MhType), p.MhLength, err, ErrUnsupportedHash, ingest.ErrCIDRefused)
	}
	h := c.Hash()
	if p.MhType == mh.IDENTITY {
		if !bytes.Equal(h[len(h)-p.MhLength:], data) {
			return fmt.Errorf("the %d-byte block differs from the %d bytes its identity CID holds: %w", len(data), p.MhLength, ErrHashMismatch)
		}
		return nil
	}
	sum, err := mh.Sum(data, p.MhType, p.MhLength)
	if err != nil {
		return fmt.Errorf("cannot hash with %s: %v: %w", hashName(p.MhType), err, ErrUnsupportedHash)
	}
	if !bytes.Equal(sum, h) {
		got := cid.NewCidV1(p.Codec, sum)
		if p.Version == 0 {
			got = cid.NewCidV0(sum)
		}
		return fmt.Errorf("data hashes to %s: %w", got, ErrHashMismatch)
	}
	return nil
}

// hashName is "sha2-256 (0x12)".
func hashName(code uint64) string {
	name, ok := mh.Codes[code]
	if !ok {
		name = "unknown"
	}
	return fmt.Sprintf("%s (0x%x)", name, code)
}
