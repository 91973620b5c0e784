package gateway

import (
	"context"
	"errors"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// fixedStore holds one block under c, with whatever data the test gives.
type fixedStore struct {
	c    cid.Cid
	data []byte
}

func (s fixedStore) Get(_ context.Context, c cid.Cid) ([]byte, error) {
	if !c.Equals(s.c) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return s.data, nil
}

func (s fixedStore) Has(_ context.Context, c cid.Cid) (bool, error) { return c.Equals(s.c), nil }

type failingStore struct{ err error }

func (s failingStore) Get(context.Context, cid.Cid) ([]byte, error) { return nil, s.err }

func (s failingStore) Has(context.Context, cid.Cid) (bool, error) { return false, s.err }

func TestReadOnlyBlockstore(t *testing.T) {
	ctx := context.Background()
	data := []byte("block data")
	c, err := cid.Prefix{Version: 0, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	other, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte("other"))
	if err != nil {
		t.Fatal(err)
	}

	good := readOnlyBlockstore{store: fixedStore{c: c, data: data}}
	blk, err := good.Get(ctx, c)
	if err != nil || string(blk.RawData()) != string(data) || !blk.Cid().Equals(c) {
		t.Fatalf("Get = %v, %v", blk, err)
	}
	if n, err := good.GetSize(ctx, c); n != len(data) || err != nil {
		t.Fatalf("GetSize = %d, %v", n, err)
	}
	// A missing block keeps an error boxo recognises as not found (404).
	if _, err := good.Get(ctx, other); !ipld.IsNotFound(err) {
		t.Fatalf("Get of a missing block: %v, want ipld.ErrNotFound", err)
	}
	if _, err := good.GetSize(ctx, other); !ipld.IsNotFound(err) {
		t.Fatalf("GetSize of a missing block: %v, want ipld.ErrNotFound", err)
	}
	if ok, err := good.Has(ctx, other); ok || err != nil {
		t.Fatalf("Has of a missing block = %v, %v", ok, err)
	}

	// Any other error of the store is kept (boxo answers 500).
	errDisk := errors.New("disk error")
	broken := readOnlyBlockstore{store: failingStore{errDisk}}
	if blk, err := broken.Get(ctx, c); !errors.Is(err, errDisk) || blk != nil {
		t.Fatalf("Get from a failing store = %v, %v; want its error", blk, err)
	}

	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Put":         good.Put(ctx, b),
		"PutMany":     good.PutMany(ctx, []blocks.Block{b}),
		"DeleteBlock": good.DeleteBlock(ctx, c),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s: %v, want ErrReadOnly", name, err)
		}
	}
	if ch, err := good.AllKeysChan(ctx); err == nil || ch != nil {
		t.Fatalf("AllKeysChan = %v, %v; want an error", ch, err)
	}
}
