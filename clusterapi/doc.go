// Package clusterapi is ingestd's client of an IPFS Cluster's REST API
// (v1.1.6), for running in front of a cluster (docs/cluster.md): it reads
// the peers and their freespace metrics to allocate adds, commits the pins
// of adds, and sends the requests that ingestd forwards. It knows the
// cluster's framing (error objects, NDJSON streams, the X-Stream-Error
// trailer) and bounds what it reads: one object at most 1 MiB, a listing
// at most 10,000 objects.
package clusterapi
