// Package restapi serves the IPFS Cluster REST API (v1.1.6) over fasthttp,
// so that ipfs-cluster-ctl and the cluster Go and JS clients work against
// ingestd unchanged. The wire contract is ../shared/spec/cluster-rest-api.md.
//
// The package is the thin HTTP glue: it parses queries (params.go), maps
// errors to statuses in one place (errors.go), frames streams with the
// X-Stream-Error trailer (stream.go), and hands request bodies as plain
// io.Readers to ingest/unixfs; it never parses content itself.
//
// Choices where the spec leaves room or where IPFS Cluster misbehaves:
//   - /add checks the query, the Content-Type and the first multipart part
//     before committing the 200, so a bad option, a body that is not
//     multipart or an upload with zero parts is a 400 error object rather
//     than a trailer error (IPFS Cluster panics on zero parts).
//   - Options that IPFS Cluster checks only while adding (hash, chunker)
//     are checked up front too: a bad value is a 400 with the same text.
//   - Several top-level entries without wrap-with-directory: every entry
//     is reported and every entry's root is pinned (IPFS Cluster pins one).
//   - The root's output line is held back until its pin is committed, so
//     that it carries the committed allocations and a failed add shows no
//     root (IPFS Cluster streams it first).
//   - Blocks are fsynced before a pin is recorded; a pin exists only for a
//     DAG whose every block is durable (or, with peers, acknowledged by
//     replication-min of them and pinned there).
//   - With peers, allocation happens before the 200: too few live peers is
//     a 503 error object naming each peer's error, not a trailer error.
//   - A failed streamed add reads up to 32 MiB more of the upload before
//     the connection closes, so that a client still sending gets the
//     trailer instead of a broken pipe.
//   - An upload whose body stalls for BodyStallTimeout (60 s) fails; there
//     is no limit on how long a steadily arriving upload takes.
//   - format=car: one file part only, CARv1 and CARv2, multi-root CARs with
//     no-pin=true or pin-roots=all; see restapi/car.go and ingest/car.
package restapi
