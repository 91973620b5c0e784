package restapi

import (
	"context"
	"errors"
	"fmt"
	"io"

	cid "github.com/ipfs/go-cid"

	"github.com/ingestd/ingestd/blockfanout"
	"github.com/ingestd/ingestd/ingest/car"
	"github.com/ingestd/ingestd/ingest/multipart"
	"github.com/ingestd/ingestd/ingest/unixfs"
)

// Messages IPFS Cluster uses for CAR uploads it refuses (spec §4.5).
var (
	errCarWrap    = errors.New("cannot wrap a CAR file upload")
	errCarNotFile = errors.New("expected CAR file is not of type file")
	errCarParts   = errors.New("a CAR upload must have exactly one file part; send one CAR per request (IPFS Cluster would silently ignore the others)")
)

// carRoots is how many roots a CAR may name for the request: one by
// default (as IPFS Cluster), any number with no-pin=true (partial or
// sharded uploads), at least one with pin-roots=all.
func carRoots(p *AddParams) car.Option {
	switch {
	case p.NoPin || p.OnlyHash:
		return car.AllowRoots(0, -1)
	case p.PinAllRoots:
		return car.AllowRoots(1, -1)
	}
	return car.AllowRoots(1, 1)
}

// runCarAdd imports the single CAR file part of an upload: every block
// re-hashed, the DAG below the roots checked complete unless no-pin, one
// output per root, then the pins (after a store sync), as runAdd.
func (s *Server) runCarAdd(ctx context.Context, p *AddParams, t *target, entries unixfs.EntryReader, emit func(unixfs.Output) error) ([]cid.Cid, error) {
	e, err := entries.Next()
	if err != nil {
		if err == io.EOF {
			return nil, unixfs.ErrNoFiles
		}
		return nil, fmt.Errorf("cannot read upload: %w", err)
	}
	if e.Kind != multipart.File {
		return nil, errCarNotFile
	}
	// Get, not Has: blocks left in the store by failed uploads must not
	// make a DAG look complete unless everything below them is there.
	get := s.cfg.Store.Get
	if t.session != nil {
		// With peers, a block not in the CAR must be on every peer that
		// receives the CAR's blocks: their pins are what must complete.
		get = func(ctx context.Context, c cid.Cid) ([]byte, error) { return holdersGet(ctx, t.holders, c) }
	}
	res, err := car.Import(ctx, e.Body, s.cfg.Pool, t.sink,
		carRoots(p),
		car.CheckComplete(!p.NoPin && !p.OnlyHash),
		car.Get(get),
	)
	if err != nil {
		return nil, err
	}
	// Anything after the CAR part is refused rather than dropped.
	if _, err := entries.Next(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("cannot read upload: %w", err)
		}
		return nil, errCarParts
	}
	for i, root := range res.Roots {
		o := unixfs.Output{Name: e.Path, Cid: root, Bytes: res.Bytes}
		if i == 0 {
			o.Size = res.RootSize
		}
		if err := emit(o); err != nil {
			return nil, err
		}
	}
	return res.Roots, nil
}

// holdersGet returns block c from the first of peers, after checking that
// every one of them holds it (offline: a peer is not asked to fetch it).
// A block one of them lacks matches ipld.ErrNotFound.
func holdersGet(ctx context.Context, peers []*blockfanout.Peer, c cid.Cid) ([]byte, error) {
	var data []byte
	for _, p := range peers {
		b, err := p.RPC().BlockGet(ctx, c, car.DefaultMaxBlockSize)
		if err != nil {
			return nil, fmt.Errorf("cannot check block %s on peer %s: %w", c, p, err)
		}
		if data == nil {
			data = b
		}
	}
	return data, nil
}
