// Package blockfanout replicates the blocks of an add to several IPFS
// (kubo) daemons at once, through their HTTP RPC API, the way IPFS Cluster
// does for local=false adds (spec: cluster-rest-api.md §4.6–4.8, §7.2–7.4),
// and pins the result on them. An add is limited only by the slowest peer
// it needs; a dead or stuck peer is retried, then dropped, never waited for
// without bound.
//
// # Use
//
//	f, err := blockfanout.New(blockfanout.Config{Peers: peers})
//	err = f.Start(ctx)                              // learns peer IDs, watches liveness
//	defer f.Stop()
//	targets, err := f.Allocate(rmin, rmax, userAllocations)
//	s := f.NewSession(ctx, targets, minOK)          // an ingest.Sink
//	roots, err := unixfs.Import(ctx, entries, opts, pool, s, emit)
//	res, err := s.Close(ctx)                        // every block acknowledged by >= minOK peers
//	res, err = f.Pin(ctx, res.OK, roots[0], name, true) // false: a direct pin
//
// Memory is bounded per session (Config.QueueBytes), so the number of
// concurrent adds (the REST layer's admission control) bounds the total.
//
// Peers can join and leave while the Fanout runs (AddPeer, RemovePeer); a
// session or pin keeps the peers it was given. Every call to kubo goes
// through package kuborpc (Peer.RPC), which also holds the retry policy
// and the bounded NDJSON reader used here.
//
// # Wire
//
// Each peer of a session gets one long-lived streaming
// POST /api/v0/block/put?cid-codec=…&mhtype=…&mhlen=…&pin=false&allow-big-block=true
// (query from the first block), one multipart part per block, written as
// blocks arrive. kubo answers {"Key","Size"} per part while the request is
// still being written; every answer is checked, in order, against the
// multihash and size of the block it stands for (kubo returns CIDv1 with
// the first block's codec for every part). What we learned from kubo
// v0.42.0:
//
//   - kubo acknowledges a part only once it has read the delimiter that
//     ends it, i.e. when the next part (or the end of the body) begins: the
//     last block written is always unacknowledged until more comes. Queues
//     therefore hold at least two blocks, and the stall clock does not run
//     for that last block.
//   - kubo hashes every part with the query's mhtype and mhlen. A block with
//     another hash function or length ends the request (closing delimiter,
//     wait for the answers) and opens a new one with its own prefix.
//   - kubo sends "Connection: close" when it answers before reading the
//     whole body (go-ipfs-cmds), which a streaming block/put always does, so
//     its connection is not reused. Liveness checks, pins and small sessions
//     do reuse connections (Config.Client's transport keeps them).
//   - Identity-hash blocks are not sent; kubo does not store them.
//
// # Memory and goroutines
//
// A session's blocks form one log shared by its peers; each peer's queue is
// the part of the log it has not acknowledged, bounded by
// Config.QueueBlocks and Config.QueueBytes. Put waits while any live
// peer's queue is full, so a session holds at most QueueBytes (or two
// blocks, if larger) however many peers it has. Blocks are neither copied
// per peer nor modified: the block/put body writes them from the caller's
// slice (blocks up to 4 KiB are copied behind their part header, into one
// reused buffer per request, to save a system call). A block is owned by
// the session from Put until every live peer has acknowledged it; a peer
// being retried needs its unacknowledged blocks again, so they stay until
// it acknowledges them or is dropped.
//
// Per peer and session there is one goroutine reading answers (and
// retrying) and the HTTP transport's writer, which runs the body's WriteTo;
// plus one watchdog per session and one liveness goroutine per Fanout.
// Nothing is started per block. Every goroutine is tracked: Close waits for
// a session's, Stop for all.
//
// # Failures
//
// A peer whose request fails (connection refused or reset, HTTP 5xx, a
// stream error, an acknowledgement that does not match, no acknowledgement
// for Config.StallTimeout) is retried after a capped exponential backoff
// (or its Retry-After) by reopening its request and resending every block
// it has not acknowledged; after Config.MaxRetries it is dropped. As soon
// as fewer than minOK peers remain, the session fails: Put and Close return
// ErrQuorum naming each failed peer (name, URL, kubo peer ID) and its
// error, without waiting for the healthy peers. Peers that the liveness
// check found down are dropped when the session starts, so a session whose
// peers are all down fails on its first Put.
//
// Locks: see LOCKS.md at the repository root.
package blockfanout
