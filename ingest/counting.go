package ingest

import (
	"context"
	"sync/atomic"

	cid "github.com/ipfs/go-cid"
)

// Counts are the blocks and bytes a Counting sink passed on.
type Counts struct {
	Blocks atomic.Int64
	Bytes  atomic.Int64
}

// Counting wraps s so that every block Put successfully is counted in the
// returned Counts. The wrapper is a CopyingSink and a ConcurrentSink exactly
// when s is, so importers treat it as they would s.
func Counting(s Sink) (Sink, *Counts) {
	c := &Counts{}
	base := countingSink{s: s, c: c}
	_, copies := s.(CopyingSink)
	_, concurrent := s.(ConcurrentSink)
	switch {
	case copies && concurrent:
		return countingCopyingConcurrent{base}, c
	case copies:
		return countingCopying{base}, c
	case concurrent:
		return countingConcurrent{base}, c
	}
	return base, c
}

type countingSink struct {
	s Sink
	c *Counts
}

func (s countingSink) Put(ctx context.Context, k cid.Cid, data []byte) error {
	n := int64(len(data)) // read before s may take data over
	if err := s.s.Put(ctx, k, data); err != nil {
		return err
	}
	s.c.Blocks.Add(1)
	s.c.Bytes.Add(n)
	return nil
}

type countingCopying struct{ countingSink }

func (countingCopying) CopiesData() {}

type countingConcurrent struct{ countingSink }

func (countingConcurrent) ConcurrentPuts() {}

type countingCopyingConcurrent struct{ countingSink }

func (countingCopyingConcurrent) CopiesData()     {}
func (countingCopyingConcurrent) ConcurrentPuts() {}
