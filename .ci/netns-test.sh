#!/usr/bin/env bash
# netns-test.sh runs one package's tests inside a network namespace that has
# nothing but loopback, as tests that start a real IPFS Cluster must
# (internal/clustertest): ipfs-cluster-service always starts NAT
# port-mapping discovery towards the default gateway, which must never leave
# the machine.
#
#   bash .ci/netns-test.sh ./internal/clustertest [-run REGEXP] [-v] [-count N] ...
#
# Needs root (unshare). Everything is built first, outside, since there is
# no module proxy inside: kubo (.ci/kubo.sh), ipfs-cluster-ctl (.ci/ctl.sh),
# ipfs-cluster-service (.ci/cluster.sh) and the package's test binary, with
# the build tag "netns" that the cluster tests carry (so that `go test ./...`
# never builds them). Then the test binary runs in the package directory, as
# `go test` would, under
#
#   unshare --net --pid --fork --mount-proc --kill-child
#
# after `ip link set lo up`. The PID namespace is a safety net: when the
# test binary exits, even by a panic or a -timeout that runs no cleanup, the
# kernel kills every process left in the namespace.
#
# Flags after the package go to the test binary; `-run X` may be written
# for `-test.run X`. `-race` is a build flag and goes to `go test -c`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

if (($# < 1)); then
	echo "usage: $0 PKG [test flags]" >&2
	exit 2
fi
pkg="$1"
shift
if ((EUID != 0)); then
	echo "netns-test.sh: must run as root (unshare --net needs it)" >&2
	exit 1
fi

build_flags=(-tags netns)
# A test binary run by hand has no timeout; give it go test's default, so
# that the harness's waits end (they stop 30s before the deadline) and the
# cleanups print the services' logs.
test_flags=(-test.timeout=10m)
for a in "$@"; do
	case "$a" in
	-race) build_flags+=(-race) ;;
	-test.*) test_flags+=("$a") ;;
	-*) test_flags+=("-test.${a#-}") ;;
	*) test_flags+=("$a") ;;
	esac
done

INGESTD_IPFS_BIN="$(bash "$repo/.ci/kubo.sh")"
INGESTD_CTL_BIN="$(bash "$repo/.ci/ctl.sh")"
INGESTD_CLUSTER_BIN="$(bash "$repo/.ci/cluster.sh")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
dir="$(cd "$repo" && go list -f '{{.Dir}}' "$pkg")"
name="$(basename "$dir").test"
echo "netns-test.sh: building $pkg's tests (${build_flags[*]})" >&2
(cd "$repo" && go vet "${build_flags[@]}" "$pkg" && go test -c "${build_flags[@]}" -o "$tmp/$name" "$pkg")
if [[ ! -x "$tmp/$name" ]]; then
	echo "netns-test.sh: $pkg has no tests" >&2
	exit 1
fi

echo "netns-test.sh: running $pkg in a loopback-only network namespace" >&2
# env -i: only what the tests need crosses into the namespace: the caller's
# INGESTD_* variables (the tests' knobs, such as INGESTD_CLUSTER_LOGLEVEL),
# then the binaries just built, which override them. So a test that cannot
# find a binary fails, it does not skip.
# sh stays PID 1 of the namespace (the "exit" keeps it from exec-ing the
# test binary), so orphans are reaped and its exit ends them all.
knobs=()
while IFS= read -r -d '' kv; do
	case "$kv" in INGESTD_*=*) knobs+=("$kv") ;; esac
done < <(env -0)
status=0
env -i \
	PATH="$PATH:/usr/sbin:/sbin" HOME="${HOME:-/root}" TMPDIR="${TMPDIR:-/tmp}" CI="${CI:-}" \
	"${knobs[@]}" \
	INGESTD_IPFS_BIN="$INGESTD_IPFS_BIN" \
	INGESTD_CTL_BIN="$INGESTD_CTL_BIN" \
	INGESTD_CLUSTER_BIN="$INGESTD_CLUSTER_BIN" \
	INGESTD_REQUIRE_KUBO=1 \
	INGESTD_NETNS=1 \
	unshare --net --pid --fork --mount-proc --kill-child \
	sh -c 'ip link set lo up && cd "$1" && shift && "$@"; exit $?' \
	sh "$dir" "$tmp/$name" "${test_flags[@]}" || status=$?
exit "$status"
