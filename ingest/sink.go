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

// DiscardSink drops every block. It backs only-hash adds: the CIDs are
// computed and nothing is stored.
type DiscardSink struct{}

// Put implements Sink.
func (DiscardSink) Put(context.Context, cid.Cid, []byte) error { return nil }
