package pinner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// ErrNotFound is returned, unwrapped, by Get and Delete for a CID that is
// not pinned. Its text is exactly the message IPFS Cluster answers with
// 404, so the REST layer can send err.Error() as is (spec §1.3, §8).
var ErrNotFound = errors.New("pin is not part of the pinset")

// errUndefinedCid rejects a Pin without a CID: a programming error.
var errUndefinedCid = errors.New("pinner: pin has an undefined cid")

// pinsPrefix is where pins live in the datastore; the rest of the key is the
// CID string, so a CIDv0 and a CIDv1 of the same content are two pins, as
// in IPFS Cluster.
var pinsPrefix = datastore.NewKey("/pins")

// Store is the pinset: one JSON-encoded Pin per CID in a datastore
// (localstore's Datastore() in production). It keeps no state of its own
// and is safe for concurrent use as far as the datastore is.
type Store struct {
	ds datastore.Batching
}

// StoreOptions configures NewStore. The zero value is the production
// setting, and the only one: there is no option to skip the sync (see
// sync).
type StoreOptions struct{}

// NewStore returns a Store keeping pins in ds under /pins.
func NewStore(ds datastore.Batching, _ StoreOptions) *Store {
	return &Store{ds: ds}
}

// sync makes the changes so far durable. It runs also with ingestd's
// --no-fsync: pebble keeps unsynced WAL writes in the process's memory
// until a 32 KiB block fills, so without it a kill -9 could lose a pin
// that was acknowledged (the pins of an add are one batch, one sync).
func (s *Store) sync(ctx context.Context) error {
	return s.ds.Sync(ctx, pinsPrefix)
}

func pinKey(c cid.Cid) datastore.Key {
	return pinsPrefix.ChildString(c.String())
}

// Put adds or replaces the pin for p.Cid. The pin is durable (the datastore
// is synced) when Put returns nil.
func (s *Store) Put(ctx context.Context, p Pin) error {
	if !p.Cid.Defined() {
		return fmt.Errorf("cannot put pin: %w", errUndefinedCid)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("cannot encode pin %s: %w", p.Cid, err)
	}
	if err := s.ds.Put(ctx, pinKey(p.Cid.Cid), data); err != nil {
		return fmt.Errorf("cannot put pin %s: %w", p.Cid, err)
	}
	if err := s.sync(ctx); err != nil {
		return fmt.Errorf("cannot sync pin %s: %w", p.Cid, err)
	}
	return nil
}

// PutBatch adds or replaces several pins in one batch with one sync: the
// pins of one add become durable together or not at all.
func (s *Store) PutBatch(ctx context.Context, pins []Pin) error {
	if len(pins) == 0 {
		return nil
	}
	b, err := s.ds.Batch(ctx)
	if err != nil {
		return fmt.Errorf("cannot start pin batch: %w", err)
	}
	for _, p := range pins {
		if !p.Cid.Defined() {
			return fmt.Errorf("cannot put pin: %w", errUndefinedCid)
		}
		data, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("cannot encode pin %s: %w", p.Cid, err)
		}
		if err := b.Put(ctx, pinKey(p.Cid.Cid), data); err != nil {
			return fmt.Errorf("cannot put pin %s: %w", p.Cid, err)
		}
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("cannot commit %d pins: %w", len(pins), err)
	}
	if err := s.sync(ctx); err != nil {
		return fmt.Errorf("cannot sync %d pins: %w", len(pins), err)
	}
	return nil
}

// Get returns the pin for c as it was put, or ErrNotFound (unwrapped).
func (s *Store) Get(ctx context.Context, c cid.Cid) (Pin, error) {
	if !c.Defined() {
		return Pin{}, ErrNotFound
	}
	data, err := s.ds.Get(ctx, pinKey(c))
	if errors.Is(err, datastore.ErrNotFound) {
		return Pin{}, ErrNotFound
	}
	if err != nil {
		return Pin{}, fmt.Errorf("cannot get pin %s: %w", c, err)
	}
	var p Pin
	if err := json.Unmarshal(data, &p); err != nil {
		return Pin{}, fmt.Errorf("cannot decode pin %s: %w", c, err)
	}
	return p, nil
}

// Delete removes the pin for c, durably, or returns ErrNotFound (unwrapped)
// if there is none. Two concurrent Deletes of the same CID may both return
// nil.
func (s *Store) Delete(ctx context.Context, c cid.Cid) error {
	if !c.Defined() {
		return ErrNotFound
	}
	key := pinKey(c)
	has, err := s.ds.Has(ctx, key)
	if err != nil {
		return fmt.Errorf("cannot check pin %s: %w", c, err)
	}
	if !has {
		return ErrNotFound
	}
	if err := s.ds.Delete(ctx, key); err != nil {
		return fmt.Errorf("cannot delete pin %s: %w", c, err)
	}
	if err := s.sync(ctx); err != nil {
		return fmt.Errorf("cannot sync deletion of pin %s: %w", c, err)
	}
	return nil
}

// List calls fn for every pin, in key order (CID string order), reading
// them one at a time from the datastore. It stops at the first error: an
// error returned by fn is returned as is; ctx ending stops it with
// ctx.Err(). Pins put or deleted during List may or may not be seen.
func (s *Store) List(ctx context.Context, fn func(Pin) error) error {
	res, err := s.ds.Query(ctx, query.Query{Prefix: pinsPrefix.String()})
	if err != nil {
		return fmt.Errorf("cannot list pins: %w", err)
	}
	defer res.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, ok := res.NextSync()
		if !ok {
			return nil
		}
		if r.Error != nil {
			return fmt.Errorf("cannot list pins: %w", r.Error)
		}
		var p Pin
		if err := json.Unmarshal(r.Value, &p); err != nil {
			return fmt.Errorf("cannot decode pin at %s: %w", r.Key, err)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
}

// Count returns the number of pins, reading keys only.
func (s *Store) Count(ctx context.Context) (int, error) {
	res, err := s.ds.Query(ctx, query.Query{Prefix: pinsPrefix.String(), KeysOnly: true})
	if err != nil {
		return 0, fmt.Errorf("cannot count pins: %w", err)
	}
	defer res.Close()
	n := 0
	for {
		r, ok := res.NextSync()
		if !ok {
			return n, nil
		}
		if r.Error != nil {
			return 0, fmt.Errorf("cannot count pins: %w", r.Error)
		}
		n++
	}
}
