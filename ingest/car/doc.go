// Package car imports a CAR (CARv1 or CARv2) from an upload: it reads the
// stream once, verifies every block against its CID, checks that the DAG
// below the roots is complete, and hands the blocks to an ingest.Sink. It
// backs `POST /add?format=car` of the IPFS Cluster REST API
// (../../shared/spec/cluster-rest-api.md §4.5); HTTP stays in the REST layer.
//
// # Pipeline
//
// As in ingest/unixfs, a reader goroutine only parses sections; each block is
// hashed (and its links decoded) on the shared ingest.HashPool; the calling
// goroutine takes the blocks back in file order, so that the first bad block
// in the file is the one reported, and stores each only once it is verified
// (with an ingest.ConcurrentSink such as the embedded store, the worker that
// verified a block stores it).
// At most 2×workers+2 blocks are in flight per import. Blocks are opaque
// bytes: they are never re-encoded.
//
// # Limits
//
// Every length read from the input is checked before anything is allocated
// for it: DefaultMaxHeaderSize (32 KiB) for the CARv1 header,
// DefaultMaxBlockSize (2 MiB, kubo's and bitswap's limit) for a block. A
// block longer than the 64 KiB read buffer is allocated only once that much
// of it has arrived, and CBOR (the header, dag-cbor blocks) is checked for
// lengths that claim more bytes than the input has before it reaches the
// CBOR tokenizer, which would otherwise allocate up to 32 MiB per claimed
// string: so a few bytes of input can never cost megabytes (go-car v2's
// NewBlockReader, which kubo's `dag import` uses, allocates 63 MB for a
// 9-byte header claiming a 30 MiB string). The completeness check keeps the
// codec and links of each block, never its data: about 100 bytes per block
// and 50 per link.
//
// # Cancellation
//
// Every Read of the upload first checks the import's context, and the
// goroutine that verifies and stores blocks waits on it too, so a cancelled
// import returns the context's error at the next Read and returns no roots.
// A Read already blocked in the upload cannot be interrupted from Go, and
// Import returns only once its reader goroutine is done with the stream:
// the caller must close it (the REST layer closes the connection) or give
// it a read deadline.
//
// # Errors
//
// Every error for a bad CAR wraps one sentinel (ErrMalformed,
// ErrHeaderTooLarge, ErrBlockTooLarge, ErrHashMismatch, ErrUnsupportedHash,
// ErrUnsupportedVersion, ErrBadRoots, ErrMissingBlock, ErrUnsupportedCodec)
// and reads "cannot <verb> <what>: <detail>: <sentinel>", naming the section,
// byte offset, CID and limit involved; a truncated stream also wraps
// io.ErrUnexpectedEOF. The REST layer shows the message as it is.
//
// # Compared with IPFS Cluster
//
// IPFS Cluster (go-car v0.6.3) accepts only CARv1, decodes only dag-pb, raw
// and dag-cbor blocks, and pins the root whether or not the CAR holds the
// DAG, so a pin of a partial CAR may never complete. This package also reads
// CARv2 (and checks its offsets and index), decodes dag-json, hashes on all
// cores instead of one, refuses hash functions kubo refuses (verifcid), and
// before anything is pinned proves that every block reachable from the roots
// is in the CAR or already in the store (Has), naming the first missing one.
// A CID kubo refuses (ingest.CheckCID: a hash verifcid does not allow, or an
// identity CID over 128 bytes) is refused as a section, as a root of the
// header (always), and as a link of a block the roots reach (when the DAG is
// checked, that is unless CheckComplete(false)), with ErrUnsupportedHash and
// ingest.ErrCIDRefused: kubo's `dag import` stores such a DAG but fails to
// pin it. Links are checked as their block is decoded, so that an oversized
// identity link is dropped at once instead of being kept until the walk.
// CheckComplete(false) with AllowRoots(0, -1) gives the partial-CAR import
// of no-pin.
//
// Formats: https://ipld.io/specs/transport/car/carv1/ and
// https://ipld.io/specs/transport/car/carv2/.
package car
