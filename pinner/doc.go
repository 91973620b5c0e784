// Package pinner keeps ingestd's pinset. This first piece is the embedded
// pin store: Store keeps one IPFS Cluster Pin object per CID in a
// datastore, in production localstore's Datastore(), in the same pebble
// database as the blocks but under its own prefix.
//
// Pin is the Cluster Pin object of the REST API
// (../shared/spec/cluster-rest-api.md §5.4): same JSON keys, in the same
// order, with null and [] kept apart, zero times as
// "0001-01-01T00:00:00Z" and CIDs as plain strings (the CID type; go-cid's
// own JSON form is {"/": "…"}). A pin is stored as that JSON, exactly as
// given, and read back unchanged: the REST layer decides what a pin looks
// like (resolved replication factors, [] allocations for "everywhere",
// timestamps), the store does not rewrite it. Cluster's pinset returns pins
// with second-precision local times and origins []; ingestd returns what it
// stored, nanoseconds included.
//
// Pins are keyed by CID string under /pins, so CIDv0 and CIDv1 of the
// same content are two pins, as in Cluster. Put and Delete return once the
// change is durable (the datastore is synced). Get and Delete of a CID that
// is not pinned return ErrNotFound unwrapped, whose text is exactly Cluster's
// "pin is not part of the pinset": the one error message Cluster clients
// map to 404 (spec §1.3, §8).
//
// Limits: List streams from the datastore in key order; with go-ds-pebble it
// reads one pebble iterator, so it sees the pinset as it was when List
// started. There is no index by name, expiry or allocation yet: filtering
// means listing everything.
package pinner
