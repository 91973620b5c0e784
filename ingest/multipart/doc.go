// Package multipart reads the multipart/form-data body of an IPFS Cluster
// (and kubo) /add request as a stream of entries: files, directories and
// symlinks with their paths, modes and modification times.
//
// It follows the conventions of boxo's files.NewFileFromPartReader, which is
// what IPFS Cluster and kubo use (../shared/spec/cluster-rest-api.md §4.2):
// the path is the URL-unescaped filename parameter of Content-Disposition,
// cleaned; application/x-directory (or multipart/form-data) parts are
// directories, application/symlink parts are symlinks whose body is the
// target, anything else is a file; mode and mtime come from the form name
// "file?mode=…&mtime=…&mtime-nsecs=…". Unlike boxo it bounds what it reads
// into memory: part headers (MaxHeaderBytes), delimiter lines (4 KiB, as
// mime/multipart), symlink targets (MaxSymlinkTarget) and path lengths
// (MaxPathLength).
//
// The framing is its own (framer.go) with mime/multipart's grammar, for
// speed: file content is read from the connection straight into the
// caller's chunk buffer and scanned there for the delimiter, instead of
// passing through two more buffers 4 KiB at a time. A differential test
// and fuzz target (FuzzFramerMatchesStdlib) hold it to mime/multipart's
// parts, headers and bodies. One difference is intended: a body that ends
// inside a part's headers is a truncated upload here, where mime/multipart
// reports a clean end.
package multipart
