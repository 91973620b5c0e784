// Package pinner owns ingestd's pin lifecycle: the durable pinset, the one
// allocation policy, a tracker per peer that pins and unpins, the status of
// every pin on every peer, recover, expiry and the reconciliation of the
// trackers with what the peers really hold. It speaks IPFS Cluster's
// objects (Pin, GlobalPinInfo, Metric, …) but no HTTP: restapi is its
// glue. The user-facing description is docs/rest-api.md.
//
// # Peers
//
// A peer is a pin target (Target): a kubo daemon reached through kuborpc,
// or, in the embedded mode (Config.Targets nil), ingestd itself, where
// "pinned" means the DAG is complete in the embedded store
// (Config.LocalCheck). The liveness of kubo peers comes from the caller
// (blockfanout checks them); the pinner never imports blockfanout.
//
// # Pinset
//
// Store keeps one IPFS Cluster Pin object per CID in a datastore, in
// production localstore's Datastore(): the same pebble database as the
// block index, under /pins. A pin is stored as its JSON, exactly as given,
// and read back unchanged: null and [] kept apart, zero times as
// "0001-01-01T00:00:00Z", CIDs as plain strings (the CID type). Pins are
// keyed by CID string, so CIDv0 and CIDv1 of the same content are two pins,
// as in IPFS Cluster. Put, Delete and PutBatch return once the change is
// durable (synced, also with --no-fsync: see Store.sync). Get and Delete of a CID that
// is not pinned return ErrNotFound unwrapped, whose text is exactly IPFS
// Cluster's "pin is not part of the pinset". List streams in key order from
// one pebble iterator, so listings never hold the pinset in memory.
//
// # Tracker
//
// Each peer has a peerTracker: a bounded job queue (Config.QueueSize)
// served by Config.Workers goroutines, and a map of items for the CIDs that
// are not in the steady state the pinset implies (an operation queued,
// running or failed, or a pin found missing). Steady items are deleted, so
// memory grows with the work in flight and the failures, not with the
// pinset; a peer's status for a CID without an item is derived from the
// pin (pinned where allocated and live, remote elsewhere, cluster_error
// when the peer is down, unpinned without a pin). The item states and
// their transitions are written down in tracker.go. A failed operation is
// retried Config.MaxAttempts times with backoff, then stays failed until a
// recover; nothing retries forever.
//
// # Background work
//
// One maintenance goroutine (maintain.go) runs the reconciliation at start
// and every Config.ReconcileInterval, recover every RecoverInterval, expiry
// every ExpiryInterval, and each second the queue pump and the liveness
// alerts. Reconciliation holds one peer's pin/ls in memory at a time
// (multihash keys) while the pinset is streamed.
//
// # Locks
//
// Pinner.mu guards the tracker map, the alerts and the lifecycle flags;
// peerTracker.mu guards one tracker's items. Both are leaf locks (see
// LOCKS.md): no I/O, callback or channel send happens under them, except
// the non-blocking send of a job.
package pinner
