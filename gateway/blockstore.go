package gateway

import (
	"context"
	"errors"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

// Store is what the gateway reads blocks from: *localstore.Store.
//
// Get returns the block's data, owned by the caller, or an error matching
// ipld.ErrNotFound (ipld.IsNotFound) when the block is absent: that is what
// boxo turns into a 404. Get must never return data other than the block's
// (localstore checks every read against a CRC-32C and returns ErrCorrupt
// instead): the gateway does not re-hash, and deserialized responses are
// not checked by clients. Both are called concurrently, from the gateway's
// request goroutines.
type Store interface {
	Get(ctx context.Context, c cid.Cid) ([]byte, error)
	Has(ctx context.Context, c cid.Cid) (bool, error)
}

var (
	// ErrReadOnly is returned by every write of the gateway's blockstore:
	// the gateway never stores what it serves, and with no exchange it never
	// fetches anything that boxo would write back.
	ErrReadOnly = errors.New("gateway: the blockstore is read-only")

	errNoKeys = errors.New("gateway: the blockstore cannot list its keys")
)

// readOnlyBlockstore is boxo's blockstore.Blockstore over a Store: the only
// glue between boxo and the embedded store.
type readOnlyBlockstore struct {
	store Store
}

var _ blockstore.Blockstore = readOnlyBlockstore{}

func (b readOnlyBlockstore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	return b.store.Has(ctx, c)
}

// Get returns the block. Errors of the store are returned as they are, so
// that boxo still recognises a not-found one (404); any other is a 500.
func (b readOnlyBlockstore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	data, err := b.store.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	// No re-hash: the store checked the data (see Store), and hashing
	// every block again would cost more than the read (localstore's
	// BenchmarkReadCheck).
	return blocks.NewBlockWithCid(data, c)
}

// GetSize reads the whole block: the store has no size-only lookup.
func (b readOnlyBlockstore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	blk, err := b.Get(ctx, c)
	if err != nil {
		return -1, err
	}
	return len(blk.RawData()), nil
}

func (readOnlyBlockstore) Put(context.Context, blocks.Block) error { return ErrReadOnly }

func (readOnlyBlockstore) PutMany(context.Context, []blocks.Block) error { return ErrReadOnly }

func (readOnlyBlockstore) DeleteBlock(context.Context, cid.Cid) error { return ErrReadOnly }

// AllKeysChan is not supported: the gateway never lists the store, and
// boxo's BlocksBackend never asks.
func (readOnlyBlockstore) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	return nil, errNoKeys
}
