// Package ingest holds what the ingest formats share: the Sink that receives
// verified blocks and the HashPool that does the CPU-bound work of every
// upload on a fixed number of goroutines.
//
// The format packages (ingest/unixfs, ingest/car) read an io.Reader and write
// to a Sink; they never see HTTP. See ../shared/STYLE.md, conventions 1 and 7.
package ingest
