// Package benchtool measures add throughput the way users see it: it
// generates deterministic data, uploads it over HTTP to one or more add
// endpoints and reports throughput, per-add latency and the root CIDs. It is
// the library behind `ingestd bench` (cmd/ingestd/bench.go; issue 10).
//
// Endpoints (Target):
//
//   - cluster: an IPFS Cluster REST API (ingestd, or a real cluster), POST
//     /add as the cluster clients send it (spec/cluster-rest-api.md §4.2:
//     form name "file", URL-escaped paths, directories as
//     application/x-directory parts), NDJSON AddedOutput back and errors in
//     the X-Stream-Error trailer (§1.5); format=car for CARs.
//   - kubo: a kubo RPC API, POST /api/v0/add, and /api/v0/dag/import for
//     CARs.
//
// Data (Dataset): one large file, a tree of small files (directories ×
// files), a deep chain of directories, or a CAR of any of them. Every add of
// a run gets its own content, derived from the base seed and the run's index
// (RunSeed), identical for every target: nothing is deduplicated by the
// store, and the targets' root CIDs for the same run must agree. The same
// seed gives the same content again: a second benchmark with the seed of
// an earlier one against the same stores measures deduplication (`ingestd
// bench` picks a random seed unless --seed is given). Content is
// streamed into the request body as it is generated (never held whole in
// memory) from a 1 MiB random pool and a 16-byte tag at the start of every
// 4 KiB block, so generating costs a memory copy per byte, far below what
// the network and the servers cost; every 4 KiB-aligned block of every file
// of every run is distinct.
//
// Several targets are measured interleaved: each round runs Concurrency
// adds on the first target, then the same content on the second, and so on
// (A B A B), so that a change of load on a shared machine hits both. An add
// that fails (connection refused, HTTP error, error object in the stream,
// X-Stream-Error trailer, truncated response, no root) is an error of that
// run; a round with an error is left out of the throughput, never counted as
// a fast run, and Report.Err is then non-nil, as it is when the targets'
// roots for a run differ.
//
// Bounds: every add has a timeout (Config.Timeout), response lines are at
// most DefaultMaxLineSize, error bodies are read up to DefaultMaxErrorBody.
package benchtool
