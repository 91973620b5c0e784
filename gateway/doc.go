// Package gateway serves the embedded block store over HTTP as an IPFS
// gateway: boxo's gateway (github.com/ipfs/boxo/gateway, the one kubo runs)
// over a read-only blockstore of the store, on its own net/http server.
//
// It is configured, not written: path resolution, UnixFS files,
// directories and HAMT shards (boxo/path/resolver, go-unixfsnode), CAR
// traversal with dag-scope and entity-bytes, CAR versions and orders,
// ranges, ETags and error statuses are all boxo's, the same code and
// version as kubo v0.42.0's gateway, which the tests use as the oracle.
// Only three pieces are ours: the blockstore adapter (blockstore.go), Basic
// auth, and the server lifecycle.
//
// # What it serves
//
//   - GET and HEAD /ipfs/{cid}[/path] as a [Trustless Gateway]: raw blocks
//     (Accept: application/vnd.ipld.raw or ?format=raw) and CARs
//     (application/vnd.ipld.car or ?format=car, with dag-scope, entity-bytes,
//     version, order and dups).
//   - With Config.Deserialized, also deserialized responses as a
//     [Path Gateway]: files, directory listings, TAR, dag-json/dag-cbor.
//     Without it (the default) such requests are answered 406.
//   - Nothing else: /ipns/ and every other path are 404, since names would
//     need the network (DNSLink, IPNS records).
//
// # Limits
//
// It is offline: no exchange, so a block the store lacks is a 404 at once
// and nothing is ever fetched or written. Blocks are not re-hashed here:
// localstore checks every read against its CRC-32C, and a corrupt block
// (localstore.ErrCorrupt) is a 500, its bytes never sent. Slow clients are bounded by ReadHeaderTimeout
// and IdleTimeout, stalled responses by boxo's RetrievalTimeout, every
// response by MaxRequestDuration, and load by MaxConcurrentRequests
// (429 beyond it). There is no write timeout: large CARs stream for long.
//
// The user-facing description, and where it differs from kubo's gateway,
// is docs/gateway.md.
//
// [Trustless Gateway]: https://specs.ipfs.tech/http-gateways/trustless-gateway/
// [Path Gateway]: https://specs.ipfs.tech/http-gateways/path-gateway/
package gateway
