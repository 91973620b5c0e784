#!/usr/bin/env bash
# cluster.sh builds the real ipfs-cluster-service 1.1.6, the IPFS Cluster peer
# that ingestd runs in front of (issue 9), and prints its absolute path on
# stdout (progress goes to stderr). $INGESTD_CLUSTER_BIN, if executable, is
# used as is.
#
# It has its own tools module (.ci/cluster) rather than a second tool in
# .ci/ctl: the service pulls in about twice the dependencies of the ctl
# (pebble, badger, raft, go-ds-crdt, the DHT...), and adding them to .ci/ctl
# could move the versions the ctl is built with. Both modules pin
# github.com/ipfs-cluster/ipfs-cluster v1.1.6 and nothing else, so every
# module they share resolves to the same version (the one in ipfs-cluster's
# own go.mod).
#
# Never run the service outside a network namespace that has only loopback:
# it always starts NAT port-mapping discovery towards the default gateway.
# .ci/netns-test.sh runs tests that use it inside one.
set -euo pipefail

readonly CLUSTER_VERSION="1.1.6"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="$repo/.cache/bin/ipfs-cluster-service"

if [[ -n "${INGESTD_CLUSTER_BIN:-}" ]]; then
	if [[ -x "$INGESTD_CLUSTER_BIN" ]]; then
		printf '%s\n' "$INGESTD_CLUSTER_BIN"
		exit 0
	fi
	echo "cluster.sh: INGESTD_CLUSTER_BIN=$INGESTD_CLUSTER_BIN is not executable; building ipfs-cluster-service instead" >&2
fi

# `ipfs-cluster-service --version` prints "ipfs-cluster-service version 1.1.6"
# and touches neither the network nor a config.
is_pinned() {
	[[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q " ${CLUSTER_VERSION//./\\.}\$"
}

if is_pinned; then
	printf '%s\n' "$bin"
	exit 0
fi

echo "cluster.sh: building ipfs-cluster-service $CLUSTER_VERSION into $bin (this takes several minutes the first time)" >&2
mkdir -p "$(dirname "$bin")"
# Build into a temporary file and rename, so an interrupted build never leaves
# a truncated binary at $bin.
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$repo/.ci/cluster" && go build -o "$tmp" github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-service) >&2
mv -f "$tmp" "$bin"

if ! is_pinned; then
	echo "cluster.sh: built $bin but '$bin --version' does not report $CLUSTER_VERSION:" >&2
	"$bin" --version >&2 || true
	exit 1
fi
printf '%s\n' "$bin"
