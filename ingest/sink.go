package ingest

import (
	"context"

	cid "github.com/ipfs/go-cid"
)

// Sink receives the blocks of an upload. UnixFS imports hand them over
// children before parents; CAR imports in file order (see ConcurrentSink
// for both).
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

// ConcurrentSink is a Sink whose Put may be called from several goroutines
// at once. Importers then store leaves on the hashing workers, right after
// hashing them, instead of one at a time on the goroutine that builds the
// DAG: with a store whose Put costs a write(2), that goroutine was the
// bottleneck of stored adds. UnixFS blocks still arrive children before
// parents; CAR blocks arrive in the order their verification finishes.
// Importers return only once no worker is calling Put any more.
type ConcurrentSink interface {
	Sink
	ConcurrentPuts()
}

// DiscardSink drops every block. It backs only-hash adds: the CIDs are
// computed and nothing is stored.
type DiscardSink struct{}

// Put implements Sink.
func (DiscardSink) Put(context.Context, cid.Cid, []byte) error { return nil }

// CopiesData implements CopyingSink.
func (DiscardSink) CopiesData() {}

// ConcurrentPuts implements ConcurrentSink.
func (DiscardSink) ConcurrentPuts() {}
