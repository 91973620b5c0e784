// Package bench measures ingestd end to end against its baselines, in the
// same run and on the same input, so that every number in BENCHMARKS.md is
// a ratio taken under identical conditions:
//
//	go test -run '^$' -bench . -benchtime 3x ./bench
//
// BenchmarkAddHTTP posts the same multipart upload over loopback HTTP to
// ingestd's /add (embedded store, and only-hash) and to a real kubo
// daemon's /api/v0/add (default, and only-hash); BenchmarkSHA256AllCores is
// the physical limit of the work: SHA-256 of every byte once, on every core.
// The kubo binary comes from .ci/kubo.sh (INGESTD_IPFS_BIN).
package bench
