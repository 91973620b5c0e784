package localstore

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/ipfs/boxo/datastore/dshelp"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	mh "github.com/multiformats/go-multihash"
)

// Hold keeps the store's garbage collection from running until release is
// called: an add holds it from its first block to its recorded pin, and a
// pin of the embedded store while it is recorded, so that a collection
// never removes a block that a pin about to be recorded needs (a block an
// add found already stored is not written again, so its position in the
// log says nothing about its age). A collection waits for every hold, and
// holds taken while it runs wait for it. Calling release twice is safe.
func (s *Store) Hold() (release func()) {
	s.gcMu.RLock()
	done := false
	return func() {
		if !done {
			done = true
			s.gcMu.RUnlock()
		}
	}
}

// Root is a live root of a collection: a pinned CID, and whether its whole
// DAG (recursive) or only the block itself (direct) is live.
type Root struct {
	Cid       cid.Cid
	Recursive bool
}

// LinksFunc returns the CIDs a block links to, decoded with the codec of
// its CID (ingest/car.Links in production); raw blocks have none.
type LinksFunc func(c cid.Cid, data []byte) ([]cid.Cid, error)

// Collect removes every block that no root reaches (IPFS's garbage
// collection, kubo's repo/gc): it takes the live roots from roots (the
// pinset; the store knows no pins), marks every block reachable from them,
// reading and decoding each non-raw block with links, then drops the index
// entry of every block not marked. It returns the removed blocks as CIDv1
// raw of their multihash, as kubo's repo/gc reports them (the index is
// keyed by multihash). A block a root names but the store lacks is
// skipped: that pin is incomplete, not a reason to stop.
//
// It runs alone: it waits for running Holds and keeps new ones waiting
// until it returns (see Hold). Removed blocks cannot be read any more;
// their bytes stay in the block log until compaction reclaims them.
// Memory: the set of marked multihashes (about 80 bytes per live block).
func (s *Store) Collect(ctx context.Context, roots func(yield func(Root) error) error, links LinksFunc) ([]cid.Cid, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()

	// live maps each marked multihash to whether its links were walked
	// (a direct root marks a block without walking it).
	live := map[string]bool{}
	var stack []Root
	mark := func(r Root) error {
		stack = append(stack[:0], r)
		for steps := 0; len(stack) > 0; steps++ {
			if steps%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			c := top.Cid
			k := string(c.Hash())
			if walked, seen := live[k]; seen && (walked || !top.Recursive) {
				continue
			}
			live[k] = top.Recursive
			if !top.Recursive || c.Type() == cid.Raw {
				continue
			}
			data, err := s.Get(ctx, c)
			if err != nil {
				continue // missing: the pin is incomplete
			}
			ls, err := links(c, data)
			if err != nil {
				continue // undecodable: nothing below it can be known
			}
			for _, l := range ls {
				stack = append(stack, Root{Cid: l, Recursive: true})
			}
		}
		return nil
	}
	if err := roots(mark); err != nil {
		return nil, fmt.Errorf("cannot collect garbage: cannot mark live blocks: %w", err)
	}
	return s.sweep(ctx, live)
}

// sweep drops the index entries of the blocks not in live.
func (s *Store) sweep(ctx context.Context, live map[string]bool) ([]cid.Cid, error) {
	prefix := []byte(blocksPrefix.String() + "/")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("cannot collect garbage: %w", err)
	}
	var removed []cid.Cid
	b := s.db.NewBatch()
	for ok := it.First(); ok; ok = it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			b.Close()
			return nil, fmt.Errorf("cannot collect garbage: %w", err)
		}
		key := it.Key()
		h, err := dshelp.DsKeyToMultihash(datastore.RawKey(string(key[len(prefix)-1:])))
		if err != nil {
			continue // not a block key
		}
		if _, ok := live[string(h)]; ok {
			continue
		}
		if err := b.Delete(bytes.Clone(key), nil); err != nil {
			it.Close()
			b.Close()
			return nil, fmt.Errorf("cannot collect garbage: %w", err)
		}
		removed = append(removed, cid.NewCidV1(cid.Raw, mh.Multihash(bytes.Clone(h))))
	}
	if err := it.Close(); err != nil {
		b.Close()
		return nil, fmt.Errorf("cannot collect garbage: %w", err)
	}
	// Not synced: an entry that comes back after a crash only resurrects a
	// block whose bytes are still in the log.
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, fmt.Errorf("cannot collect garbage: cannot drop %d index entries: %w", len(removed), err)
	}
	return removed, nil
}

// prefixEnd is the least key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
