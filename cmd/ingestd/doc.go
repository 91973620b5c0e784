// Command ingestd runs the ingestd service: the IPFS Cluster REST API with a
// streaming /add, over an embedded block and pin store.
//
// With no configuration it listens on 127.0.0.1:9094 and keeps its data in
// ~/.ingestd. Settings come, in increasing priority, from defaults, an
// optional JSON config file (--config), INGESTD_* environment variables and
// flags:
//
//	--config FILE     INGESTD_CONFIG   JSON object with the keys below
//	--data DIR        INGESTD_DATA     "data"    (default ~/.ingestd)
//	--listen ADDR     INGESTD_LISTEN   "listen"  (default 127.0.0.1:9094)
//	--peername NAME   INGESTD_PEERNAME "peername"
//	--no-fsync        INGESTD_NO_FSYNC "no_fsync" (default false: fsync before an add is acknowledged)
//	--peer [NAME=]URL INGESTD_PEERS    "peers": [{"name","url"}] (repeatable; default none)
//	--basic-auth U:P  INGESTD_BASIC_AUTH "basic_auth_credentials": {"user":"password"} (repeatable; comma-separated in env; default none: no auth)
//	--tls-cert FILE   INGESTD_TLS_CERT "ssl_cert_file" (PEM; with --tls-key; default "": plain HTTP)
//	--tls-key FILE    INGESTD_TLS_KEY  "ssl_key_file"
//	--gateway ADDR    INGESTD_GATEWAY  "gateway" (default 127.0.0.1:8080 in the embedded mode; "off": none)
//	--gateway-deserialized INGESTD_GATEWAY_DESERIALIZED "gateway_deserialized" (default false: trustless only)
//	--cluster URL     INGESTD_CLUSTER  "cluster" (run in front of an IPFS Cluster; default none)
//	--cluster-basic-auth U:P, --cluster-token JWT, --cluster-kubo PEERID=URL (repeatable): how to reach it
//	--gc-interval D   INGESTD_GC_INTERVAL "gc_interval" (embedded store GC on a timer; default: on request only)
//	--metrics ADDR    INGESTD_METRICS  "metrics" (GET /metrics without auth; default none)
//	--debug ADDR      INGESTD_DEBUG    "debug" (pprof; default none)
//
// With no peer, blocks go to the embedded store. With peers (kubo RPC API
// URLs), every add streams its blocks to the allocated peers and pins there
// (see package blockfanout); the pinset stays in the embedded store. With
// --cluster, an IPFS Cluster keeps the pinset (docs/cluster.md).
//
// Subcommands: `ingestd bench` measures add endpoints (package benchtool),
// `ingestd verify` checks every block and pin of a stopped ingestd's store.
//
// SIGINT or SIGTERM stops it gracefully: no new connections, in-flight adds
// finish (or fail after the shutdown timeout, recording no pin), then the
// store is closed.
package main
