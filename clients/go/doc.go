// Package clients drives a real ingestd process with the real IPFS Cluster
// v1.1.6 Go client (github.com/ipfs-cluster/ipfs-cluster/api/rest/client),
// end to end: the tests build ./cmd/ingestd from the repository root, start
// it on a loopback port with a temporary data directory, call every method of
// the client's Client interface, and stop it with SIGTERM.
//
// It is a module of its own so that the client's dependencies (libp2p,
// opencensus, go-ipfs-api, ...) stay out of ingestd's go.mod. The versions are
// those of .ci/ctl, which builds ipfs-cluster-ctl 1.1.6 from the same module.
//
// Expectations come from the wire specification
// (shared/spec/cluster-rest-api.md) and from kubo, never from ingestd's
// output: every CID an add reports is compared with what `ipfs add` (kubo
// v0.42.0, $INGESTD_IPFS_BIN or .cache/bin/ipfs, built by .ci/kubo.sh) gives
// for the same files and options.
//
// Run it with `bash .ci/clients.sh` (or `make clients`) from the repository
// root; see clients/README.md.
package clients
