package unixfs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	dstest "github.com/ipfs/boxo/ipld/merkledag/test"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	ihelper "github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/boxo/ipld/unixfs/importer/trickle"
	pb "github.com/ipfs/boxo/ipld/unixfs/pb"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/ingestd/ingestd/ingest"
)

// boxoImport is the reference: boxo's own importer, serial, as kubo runs it.
func boxoImport(t testing.TB, data []byte, o *Options) cid.Cid {
	t.Helper()
	spl, err := chunker.FromString(bytes.NewReader(data), o.Chunker)
	if err != nil {
		t.Fatal(err)
	}
	p := ihelper.DagBuilderParams{Dagserv: dstest.Mock(), RawLeaves: o.RawLeaves, Maxlinks: o.MaxFileLinks, CidBuilder: o.CidBuilder()}
	db, err := p.New(spl)
	if err != nil {
		t.Fatal(err)
	}
	layout := balanced.Layout
	if o.Trickle {
		layout = trickle.Layout
	}
	nd, err := layout(db)
	if err != nil {
		t.Fatal(err)
	}
	return nd.Cid()
}

// memSink records blocks and checks that each one hashes to its CID.
type memSink struct {
	mu     sync.Mutex
	blocks map[cid.Cid][]byte
}

func (m *memSink) Put(_ context.Context, c cid.Cid, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blocks == nil {
		m.blocks = map[cid.Cid][]byte{}
	}
	m.blocks[c] = data
	return nil
}

// TestFileMatchesBoxo compares our parallel builder with boxo's serial
// importer on the shapes where layouts change: one leaf, a full node, one
// leaf more, a second level, for both layouts and leaf kinds.
func TestFileMatchesBoxo(t *testing.T) {
	pool := ingest.NewHashPool(4)
	defer pool.Stop()
	rng := rand.New(rand.NewPCG(1, 2))
	const chunk = 1024
	sizes := []int{0, 1, chunk, chunk + 1, 3*chunk - 1, 8 * chunk, 8*chunk + 1, 64*chunk + 5, 100*chunk + 7, 600 * chunk}
	type variant struct {
		name   string
		mutate func(o *Options)
	}
	variants := []variant{
		{"v0", func(o *Options) {}},
		{"v1", func(o *Options) { o.CidVersion = 1 }},
		{"v0-raw", func(o *Options) { o.RawLeaves, o.RawLeavesSet = true, true }},
		{"trickle", func(o *Options) { o.Trickle = true }},
		{"trickle-v1", func(o *Options) { o.Trickle = true; o.CidVersion = 1 }},
		{"blake3", func(o *Options) { o.HashFunc = mh.BLAKE3 }},
		{"inline", func(o *Options) { o.CidVersion = 1; o.Inline = true; o.InlineLimit = 64 }},
	}
	for _, v := range variants {
		for _, size := range sizes {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			o := DefaultOptions()
			o.Chunker = "size-1024"
			o.MaxFileLinks = 8
			v.mutate(&o)
			if err := o.Resolve(); err != nil {
				t.Fatal(err)
			}
			want := boxoImport(t, data, &o)
			for run := 0; run < 2; run++ {
				sink := &memSink{}
				root, err := buildFile(context.Background(), bytes.NewReader(data), &o, pool, sink, 0, time.Time{}, nil)
				if err != nil {
					t.Fatalf("%s/%d: %v", v.name, size, err)
				}
				if root.cid != want {
					t.Fatalf("%s/%d: got %s, boxo %s", v.name, size, root.cid, want)
				}
				for c, b := range sink.blocks {
					got, err := c.Prefix().Sum(b)
					if err != nil || !got.Equals(c) {
						t.Fatalf("%s/%d: stored block %s does not hash to its CID", v.name, size, c)
					}
				}
				if _, ok := sink.blocks[root.cid]; !ok && root.cid.Prefix().MhType != mh.IDENTITY {
					t.Fatalf("%s/%d: root %s not stored", v.name, size, root.cid)
				}
			}
		}
	}
}

func TestEncodeLeafMatchesBoxo(t *testing.T) {
	b := &fileBuilder{opts: &Options{}}
	for _, typ := range []pb.Data_DataType{ft.TFile, ft.TRaw} {
		b.leafType = typ
		for _, n := range []int{1, 127, 128, 300, 16383, 16384, 262144, 1 << 20, 2<<20 - 256} {
			data := bytes.Repeat([]byte{byte(n)}, n)
			pn, err := b.protoLeaf(data, time.Time{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeLeaf(nil, data, typ); !bytes.Equal(got, pn.RawData()) {
				t.Fatalf("type %v, %d bytes: encodings differ", typ, n)
			}
		}
	}
}
