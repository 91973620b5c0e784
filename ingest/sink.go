package ingest

import (
	"context"

	cid "github.com/ipfs/go-cid"
)

// Sink receives the blocks of an upload, children before parents.
//
// Ownership: the importer hands data over to the sink. It never reads,
// modifies or reuses the slice after Put returns, so a sink may keep it
// (for example in a per-peer queue) without copying.
type Sink interface {
	Put(ctx context.Context, c cid.Cid, data []byte) error
}

// CopyingSink is a Sink that does not keep data after Put returns (it copies
// it, writes it out, or drops it). The importer then owns the slice again
// once Put returns and recycles it for the next chunk, which spares
// allocating and zeroing a chunk buffer per block.
type CopyingSink interface {
	Sink
	CopiesData()
}

// DiscardSink drops every block. It backs only-hash adds: the CIDs are
// computed and nothing is stored.
type DiscardSink struct{}

// Put implements Sink.
func (DiscardSink) Put(context.Context, cid.Cid, []byte) error { return nil }

// CopiesData implements CopyingSink.
func (DiscardSink) CopiesData() {}
