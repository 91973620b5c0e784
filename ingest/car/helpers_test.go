package car_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	ihelper "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"
)

// carBlock is a section of a test CAR.
type carBlock struct {
	cid  cid.Cid
	data []byte
}

// collectDAG is a DAGService that keeps every node added, in order
// (children before parents, the root last).
type collectDAG struct{ blocks []carBlock }

func (d *collectDAG) Add(_ context.Context, n ipld.Node) error {
	d.blocks = append(d.blocks, carBlock{n.Cid(), n.RawData()})
	return nil
}

func (d *collectDAG) AddMany(ctx context.Context, ns []ipld.Node) error {
	for _, n := range ns {
		_ = d.Add(ctx, n)
	}
	return nil
}
func (d *collectDAG) Get(context.Context, cid.Cid) (ipld.Node, error)            { return nil, ipld.ErrNotFound{} }
func (d *collectDAG) GetMany(context.Context, []cid.Cid) <-chan *ipld.NodeOption { return nil }
func (d *collectDAG) Remove(context.Context, cid.Cid) error                      { return nil }
func (d *collectDAG) RemoveMany(context.Context, []cid.Cid) error                { return nil }

// unixfsDAG imports data with boxo's balanced importer (what kubo runs) and
// returns the root and the blocks, root last.
func unixfsDAG(data []byte, chunkSize int64, maxLinks int, rawLeaves bool, builder cid.Builder) (cid.Cid, []carBlock) {
	dag := &collectDAG{}
	params := ihelper.DagBuilderParams{Maxlinks: maxLinks, RawLeaves: rawLeaves, CidBuilder: builder, Dagserv: dag}
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(data), chunkSize))
	if err != nil {
		panic(err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		panic(err)
	}
	return root.Cid(), dag.blocks
}

// randomBytes is deterministic pseudo-random data.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// headerBytes is a length-prefixed DAG-CBOR CAR header. A nil roots omits
// the field (as in the CARv2 pragma).
func headerBytes(version int64, roots []cid.Cid) []byte {
	nb := basicnode.Prototype.Any.NewBuilder()
	n := 1
	if roots != nil {
		n = 2
	}
	ma, _ := nb.BeginMap(int64(n))
	if roots != nil {
		_ = ma.AssembleKey().AssignString("roots")
		la, _ := ma.AssembleValue().BeginList(int64(len(roots)))
		for _, r := range roots {
			_ = la.AssembleValue().AssignLink(cidlink.Link{Cid: r})
		}
		_ = la.Finish()
	}
	_ = ma.AssembleKey().AssignString("version")
	_ = ma.AssembleValue().AssignInt(version)
	_ = ma.Finish()
	var buf bytes.Buffer
	if err := dagcbor.Encode(nb.Build(), &buf); err != nil {
		panic(err)
	}
	return append(binary.AppendUvarint(nil, uint64(buf.Len())), buf.Bytes()...)
}

func sectionBytes(c cid.Cid, data []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(c.ByteLen()+len(data)))
	out = append(out, c.Bytes()...)
	return append(out, data...)
}

// carV1 writes a CARv1 with the blocks in the given order.
func carV1(roots []cid.Cid, blocks []carBlock) []byte {
	out := headerBytes(1, roots)
	for _, b := range blocks {
		out = append(out, sectionBytes(b.cid, b.data)...)
	}
	return out
}

// carV2 wraps a CARv1 payload in a CARv2 without an index, or with the given
// index bytes right after the payload.
func carV2(payload, index []byte) []byte {
	out := headerBytes(2, nil)
	var h [40]byte
	dataOffset := uint64(len(out) + len(h))
	binary.LittleEndian.PutUint64(h[16:], dataOffset)
	binary.LittleEndian.PutUint64(h[24:], uint64(len(payload)))
	if index != nil {
		binary.LittleEndian.PutUint64(h[32:], dataOffset+uint64(len(payload)))
	}
	out = append(out, h[:]...)
	out = append(out, payload...)
	return append(out, index...)
}

// v2Header returns the data offset, data size and index offset fields of a
// CARv2 produced with the canonical 11-byte pragma.
func v2Fields(b []byte) (dataOffset, dataSize, indexOffset []byte) {
	return b[11+16 : 11+24], b[11+24 : 11+32], b[11+32 : 11+40]
}

func rawBlock(data []byte) carBlock {
	c, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		panic(err)
	}
	return carBlock{c, data}
}

// memSink keeps every block it is given.
type memSink struct {
	mu     sync.Mutex
	blocks map[string][]byte
	order  []cid.Cid
}

func (s *memSink) Put(_ context.Context, c cid.Cid, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blocks == nil {
		s.blocks = make(map[string][]byte)
	}
	s.blocks[c.KeyString()] = data
	s.order = append(s.order, c)
	return nil
}
