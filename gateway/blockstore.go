package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

// Store is what the gateway reads blocks from: *localstore.Store.
//
// Get returns the block's data, owned by the caller, or an error matching
// ipld.ErrNotFound (ipld.IsNotFound) when the block is absent: that is what
// boxo turns into a 404. Both are called concurrently, from the gateway's
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

	// ErrCorruptBlock is returned (wrapped, with the CID) for a block whose
	// data does not hash to its CID. It is never served: boxo answers 500.
	ErrCorruptBlock = errors.New("gateway: block data does not match its CID")

	errNoKeys = errors.New("gateway: the blockstore cannot list its keys")
)

// readOnlyBlockstore is boxo's blockstore.Blockstore over a Store: the only
// glue between boxo and the embedded store. Every read is verified against
// its CID before boxo sees it, so a corrupted block is never served, not
// even in deserialized responses, which clients cannot check.
type readOnlyBlockstore struct {
	store Store
}

var _ blockstore.Blockstore = readOnlyBlockstore{}

func (b readOnlyBlockstore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	return b.store.Has(ctx, c)
}

// Get returns the block, checked against its CID. A not-found error of the
// store is returned as is, so boxo still recognises it.
func (b readOnlyBlockstore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	data, err := b.store.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	// Prefix().Sum rebuilds the CID from the data with c's version, codec
	// and hash function, so equality is a check of the multihash.
	sum, err := c.Prefix().Sum(data)
	if err != nil {
		return nil, fmt.Errorf("cannot verify block %s: %w", c, err)
	}
	if !sum.Equals(c) {
		return nil, fmt.Errorf("cannot serve block %s (%d bytes): %w", c, len(data), ErrCorruptBlock)
	}
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
