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
//   - Blocks are fsynced before a pin is recorded; a pin exists only for a
//     DAG whose every block is durable.
package restapi
