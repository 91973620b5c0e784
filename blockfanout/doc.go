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
// By default each peer of a session gets its blocks as CAR segments: a
// series of POST /api/v0/dag/import?pin-roots=false&stats=true&…
// requests, each one multipart part holding a CARv1 stream (a header with
// no roots, then one section per block, written from the caller's slice
// as blocks arrive). The root is pinned afterwards by Pin, so a segment
// needs none, and kubo's reader (go-car v2's BlockReader) accepts an empty
// roots list. kubo answers a dag/import only once it has read and stored
// the whole CAR, with {"Stats":{"BlockCount","BlockBytesCount"}}: that
// answer, checked against the blocks and bytes the request sent, is the
// acknowledgement of every block of the segment at once (in order: a
// segment answered before an older one is acknowledged with it). A
// segment ends at half a queue (Config.QueueBlocks/2 blocks,
// Config.QueueBytes/2 bytes), at the end of the session, or as soon as a
// Put waits for this peer. Each peer has up to two segments in flight:
// the next one streams while kubo stores the previous one and answers
// (with one at a time each peer sat idle for every answer: issue 12), and
// both lie inside the queue, so memory is bounded as before. The second
// request opens only once the peer has answered a dag/import with stats,
// so a peer that refuses dag/import is sent one request, not two. kubo stores a CAR in batches
// (PutMany) and spends about half the CPU per block of block/put
// (BENCHMARKS.md, issue 12); fast-provide-root and fast-provide-dag are
// off, since a segment has no roots to announce.
//
// A peer whose dag/import answers 403, 404, 405 or 501 (a kubo without
// it, or a proxy that filters it), or answers without stats, gets
// block/put instead, at once and for the rest of the Fanout's life
// (Peer.Wire); Config.BlockPut forces block/put for every peer. Then the
// peer gets one long-lived streaming
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
//     wait for the answers) and opens a new one with its own prefix. (A CAR
//     segment carries each block's own CID, so dag/import has no such
//     break.)
//   - kubo sends "Connection: close" when it answers before reading the
//     whole body (go-ipfs-cmds), which a streaming block/put always does, so
//     its connection is not reused. A dag/import answers after the body, so
//     its connection is reused, as are those of liveness checks and pins.
//   - Identity-hash blocks are not sent; kubo does not store them.
//
// A retry (either wire) reopens a request from the first block the peer
// has not acknowledged; for dag/import that is the first block of the
// oldest unanswered segment. A failure of either of a peer's two requests
// aborts both (the failure is counted once) and resends from there.
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
// Per peer and session there are two goroutines (lanes) that open
// requests, read answers and retry, and the HTTP transport's writer of
// each open request, which runs the body's WriteTo (up to two dag/import
// requests per peer at once, one block/put);
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
// error, without waiting for the healthy peers. A peer that the quorum
// does not need (the others still make minOK) and that holds up Put or
// Close, owing an answer with no progress for Config.LagTimeout, is
// dropped at once with ErrLagging, without retries: a hung (SIGSTOPped)
// peer costs an add LagTimeout, not StallTimeout times its retries (issue
// 11). Peers that the liveness
// check found down are dropped when the session starts, so a session whose
// peers are all down fails on its first Put.
//
// Locks: see LOCKS.md at the repository root.
package blockfanout
