// Package kuborpc is a client for one kubo (IPFS) daemon's HTTP RPC API:
// POST <url>/api/v0/<cmd>?<args> (spec: cluster-rest-api.md §7, §7.3–7.4).
// It is the one place ingestd speaks to kubo: blockfanout streams blocks
// through Client.Post and pins with Client.PinAdd, and the pin tracker uses
// the typed calls (PinAdd, PinRm, PinLs, PinLsCid, PinUpdate, RepoGC,
// Resolve, ID, RepoStat, SwarmConnect, SwarmPeers). It imports no other
// ingestd package.
//
// # Errors and retries
//
// A non-200 answer is an *HTTPError carrying kubo's {"Message"} and any
// Retry-After. IsPermanent tells errors that a retry would repeat (HTTP
// 4xx other than 408 and 429, undecodable answers, errors marked with
// Permanent) from transient ones (connection refused or reset, HTTP 5xx,
// stalls); Retry and Backoff implement the retry policy that IPFS Cluster
// and blockfanout use: 100ms doubling to 5s, or Retry-After. Typed calls
// wrap their errors as "cannot <cmd> <arg> on <url>: …", so errors.As and
// errors.Is still reach the *HTTPError, ErrStalled or the context's cause.
//
// kubo reports some outcomes only in its error message: "not pinned" for
// pin/rm and pin/ls of a CID that is not pinned. Those are the only errors
// classified by text, and only kubo's Message field is looked at.
//
// # Limits
//
// Everything read from the network is bounded: one NDJSON line of an answer
// at 1 MiB (MaxLineSize; the largest answers, id and swarm/peers, are a
// few KiB per peer), an error body at 64 KiB (MaxErrorBody). Streamed
// answers (pin/ls, repo/gc, pin/add progress) are read line by line and
// never held whole. No call has a timeout of its own: block/put and pin/add
// last as long as the data they move, so bounding time is the caller's
// context (and PinAdd's stall timer).
//
// # Kubo version
//
// The calls, their options and the answers' keys were checked against kubo
// v0.42.0 (the version .ci/kubo.sh builds), by the tests in this package,
// which run against a real daemon. Quirks seen there:
//
//   - repo/gc's Key is a DAG-JSON link {"/":"<cid>"}, unlike every other
//     command's plain string.
//   - pin/ls of a single CID reports an indirect pin as "indirect through
//     <root>"; PinLsCid returns "indirect".
//   - Errors that happen after the answer began arrive in the X-Stream-Error
//     trailer of a 200 answer, which is read once the body is at its end.
package kuborpc
