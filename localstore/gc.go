package localstore

import (
	"bytes"
	"context"
	"errors"
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
// collection, kubo's repo/gc), then reclaims their disk: it takes the live
// roots from roots (the pinset; the store knows no pins), marks every block
// reachable from them, reading and decoding each non-raw block with links,
// drops the index entry of every block not marked, and compacts the
// segments left at most Options.CompactThreshold live (see compact.go). It
// returns the removed blocks as CIDv1 raw of their multihash, as kubo's
// repo/gc reports them (the index is keyed by multihash). A block a root
// names but the store lacks is skipped: that pin is incomplete, not a
// reason to stop. A block it cannot read for another reason (ErrCorrupt,
// an I/O error) stops the collection before anything is removed: what the
// block links to cannot be known. A block whose links cannot be decoded
// (ErrUnsupportedCodec, ErrMalformed from LinksFunc) is kept, and nothing
// below it: the same choice as for a missing block.
//
// The mark and the sweep run alone: they wait for running Holds and keep
// new ones waiting until the sweep is done (see Hold). The compaction that
// follows lets Holds, Puts and Gets run (only another Collect or Compact
// waits). If the sweep succeeds and the compaction fails, Collect returns
// the removed blocks and the compaction's error: the blocks are gone, the
// space is not reclaimed yet, and the next Collect or Compact tries again.
// Memory: the set of marked multihashes (about 80 bytes per live block),
// and, while a segment is compacted, its index entries.
func (s *Store) Collect(ctx context.Context, roots func(yield func(Root) error) error, links LinksFunc) ([]cid.Cid, error) {
	removed, _, err := s.collect(ctx, roots, links)
	return removed, err
}

// collect is Collect, with what its compaction did.
func (s *Store) collect(ctx context.Context, roots func(yield func(Root) error) error, links LinksFunc) ([]cid.Cid, CompactStats, error) {
	if s.closed.Load() {
		return nil, CompactStats{}, ErrClosed
	}
	if err := s.writable(); err != nil {
		return nil, CompactStats{}, fmt.Errorf("cannot collect garbage: %w", err)
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	removed, err := s.markAndSweep(ctx, roots, links)
	if err != nil {
		return nil, CompactStats{}, err
	}
	st, err := s.compact(ctx)
	if err != nil {
		return removed, st, fmt.Errorf("cannot reclaim the space of %d removed blocks: %w", len(removed), err)
	}
	return removed, st, nil
}

// markAndSweep is Collect's mark and sweep, under gcMu.
func (s *Store) markAndSweep(ctx context.Context, roots func(yield func(Root) error) error, links LinksFunc) ([]cid.Cid, error) {
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
			if errors.Is(err, ErrNotFound) {
				continue // missing: the pin is incomplete
			}
			if err != nil {
				// Corrupt, unreadable, or the store closing: what it links
				// to cannot be known, and sweeping now could remove it.
				return fmt.Errorf("cannot read block %s: %w", c, err)
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

// sweep drops the index entries of the blocks not in live, and records
// the live bytes of every sealed segment (compact.go) in the same batch.
// Sealed segments gain no entries (Puts append to the current segment,
// and compaction, which moves entries, waits for Collect), so the counts
// are exact when the batch commits; they can only fall afterwards, or,
// when a crash forgets a segment's unsynced tail, be too high, which only
// delays a compaction.
func (s *Store) sweep(ctx context.Context, live map[string]bool) ([]cid.Cid, error) {
	sealed := s.log.sealed()
	liveBytes := make(map[uint32]uint64, len(sealed))
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
			if at, ok := parseLoc(it.Value()); ok {
				if size, ok := sealed[at.seg]; ok && at.end() <= size {
					liveBytes[at.seg] += uint64(at.n)
				}
			}
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
	for seg := range sealed {
		if err := b.Set(liveKey(seg), liveValue(liveBytes[seg]), nil); err != nil {
			b.Close()
			return nil, fmt.Errorf("cannot collect garbage: %w", err)
		}
	}
	// Synced (once per Collect): the blocks reported removed stay removed
	// after a crash, and a compaction interrupted by one finds its counts.
	if err := s.wrote(b.Commit(pebble.Sync)); err != nil {
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
