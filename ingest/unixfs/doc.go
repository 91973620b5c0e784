// Package unixfs builds UnixFS DAGs from uploads exactly as kubo's
// `ipfs add` does for the same options, so that every CID ingestd reports
// equals kubo's (conformance_test.go checks this against a real kubo over
// 90 cases). Spec: ../../shared/spec/cluster-rest-api.md §4.3–4.4.
//
// Import reads entries (files, directories, symlinks) from an EntryReader,
// such as the multipart body of /add (package ingest/multipart), writes
// every block to an ingest.Sink, children before parents, and reports the
// outputs in IPFS Cluster's order.
//
// # Files
//
// A file is chunked on a reader goroutine; its leaves are encoded and
// hashed on the shared ingest.HashPool, so one large file uses every core;
// and the layout code, a port of boxo's importer/balanced and
// importer/trickle in which "read the next chunk and hash it" became "take
// the next leaf the pool already hashed", consumes them in order and builds
// the parents. The shape of the DAG, and so every CID, is boxo's
// (boxo_test.go compares both on every layout boundary).
//
// Memory per file is bounded by a window of 2×workers+2 leaves in flight,
// not by the file's size. Buffer ownership: a chunk belongs to its leaf
// until the leaf's block is handed to the sink; the sink then owns it,
// unless it is an ingest.CopyingSink, in which case the buffer goes back to
// the pool once Put returns.
//
// # Directories
//
// Directories are built with boxo's uio.Directory once all their entries
// are known, with every option set per directory (max links, HAMT fanout,
// size estimation, sharding threshold, CID builder): nothing here touches
// boxo's package globals, so concurrent imports with different options do
// not disturb each other. Only names and child CIDs are kept, about 150
// bytes per entry, and names and paths are substrings of the entries'
// paths, never copies per directory.
//
// # Limits
//
// Per upload (Options.MaxEntries, Options.MaxPathBytes): at most
// DefaultMaxEntries (4 Mi) entries, the directories their paths imply
// included, and DefaultMaxPathBytes (256 MiB) of paths, each implied
// directory charged its full path. Memory is then bounded by the limits
// (about 150 bytes per entry plus the paths kept), not by the shape of the
// tree, and so are the outputs, whose names are those paths. Past a limit
// Import fails with ErrUploadLimit. multipart.MaxPathLength bounds one
// path (4 KiB, so at most 2,048 levels).
//
// # Cancellation
//
// Import observes its context everywhere it loops: before each entry,
// before each Read of a file (the chunker reads through a wrapper that
// checks it), while waiting for a leaf, and before each directory it
// builds; it then returns the context's error and reports no CID for the
// file or directory it was in. A Read already blocked in the upload cannot
// be interrupted from Go, and Import returns only once its reader
// goroutine is done with the body: the caller must close the body (the
// REST layer closes the connection) or give it a read deadline.
//
// # Options
//
// Options mirror kubo's add options and rules (Options.Resolve): CIDv1
// implies raw leaves unless raw-leaves is given, a hash other than sha2-256
// implies CIDv1, mode and mtime turn raw leaves off; ApplyProfile sets an
// IPIP-499 profile. Choices where kubo and IPFS Cluster differ: without
// wrapping, every top-level entry is its own DAG and root (both kubo and
// IPFS Cluster add each entry separately); a later entry may not go back
// into a top-level directory that is already finished (ErrBadEntry).
//
// # Names and CIDs kubo treats specially
//
// These follow kubo 0.42 as measured through its HTTP API
// (conformance_http_test.go):
//
//   - A file or symlink part named "", "." or ".." (all clean to "") is
//     named by its CID string, as a link of its directory and in the
//     outputs, wrapped or not (kubo's Adder.addNode). Two of them with the
//     same content in one directory are a duplicate (ErrBadEntry; kubo:
//     "directory already has entry by that name"). Unwrapped, kubo adds
//     such twins separately; here they are a duplicate too.
//   - Without wrap, a directory part named "", "." or ".." is the root of
//     the add, output as "", and every later part goes inside it (boxo's
//     multipart walker takes it for "/"). With wrap, or a second time, it
//     is ErrBadEntry (kubo: "no path given to Mkdir").
//   - hash=identity: every block becomes an identity CID, and kubo refuses
//     one that carries more than 128 bytes (ingest.MaxIdentityDigestSize)
//     instead of chunking smaller: a leaf, a parent, a directory, and also
//     the root directory of its MFS in which kubo puts an unwrapped file
//     or symlink under its CID string, so a single file of 41 bytes or
//     more already fails. Such an add fails with an error wrapping both
//     ErrBadOption and ingest.ErrCIDRefused. --inline never makes such a
//     CID (its limit is at most 128).
package unixfs
