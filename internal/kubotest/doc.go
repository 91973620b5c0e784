// Package kubotest runs real kubo (IPFS) processes for ingestd's tests.
//
// Kubo is the oracle: rather than re-deriving CIDs, chunking or DAG layouts
// in test code (and risking the same bug on both sides), tests ask the pinned
// kubo release what `ipfs add --only-hash` produces, and check ingestd against
// it. The same package starts kubo daemons so that ingestd can be exercised
// against the real HTTP RPC API instead of a mock.
//
// Every repository made here is isolated in a t.TempDir() and configured to
// stay on 127.0.0.1: no bootstrap peers, no routing, no mDNS, no NAT port
// mapping, no AutoConf/AutoTLS fetches and no telemetry. Tests therefore need
// no network access and cannot leak traffic to the public IPFS network.
//
// The kubo binary comes from `bash .ci/kubo.sh` (or $INGESTD_IPFS_BIN); see
// Binary for how tests find it and what happens when it is missing.
package kubotest
