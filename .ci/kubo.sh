#!/usr/bin/env bash
# kubo.sh builds the pinned kubo (IPFS) binary that ingestd's tests use as
# their oracle and prints its absolute path on stdout (and nothing else, so
# callers can do `bin=$(bash .ci/kubo.sh)`). Progress goes to stderr.
#
# The binary is built from the tools module in .ci/tools because
# `go install github.com/ipfs/kubo/cmd/ipfs@vX` is refused (kubo's go.mod has
# exclude directives); the tools module pins kubo and all its dependencies via
# its committed go.mod/go.sum, so the build is reproducible and needs no
# `go mod tidy`.
#
# If $INGESTD_IPFS_BIN is set and executable it is printed as-is and nothing
# is built: that is the escape hatch for machines that already have kubo.
set -euo pipefail

readonly KUBO_VERSION="0.42.0"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="$repo/.cache/bin/ipfs"

if [[ -n "${INGESTD_IPFS_BIN:-}" ]]; then
	if [[ -x "$INGESTD_IPFS_BIN" ]]; then
		printf '%s\n' "$INGESTD_IPFS_BIN"
		exit 0
	fi
	echo "kubo.sh: INGESTD_IPFS_BIN=$INGESTD_IPFS_BIN is not executable; building kubo instead" >&2
fi

# A binary left over from an older pin would silently change the oracle's
# CIDs, so only reuse it when it reports the pinned version.
is_pinned() {
	[[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -qF "$KUBO_VERSION"
}

if is_pinned; then
	printf '%s\n' "$bin"
	exit 0
fi

echo "kubo.sh: building kubo v$KUBO_VERSION into $bin (this takes a few minutes the first time)" >&2
mkdir -p "$(dirname "$bin")"
# Build into a temporary file and rename, so an interrupted build never leaves
# a truncated binary at $bin that a later run (or a test) would pick up.
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$repo/.ci/tools" && go build -o "$tmp" github.com/ipfs/kubo/cmd/ipfs) >&2
mv -f "$tmp" "$bin"

if ! is_pinned; then
	echo "kubo.sh: built $bin but '$bin version' does not report $KUBO_VERSION:" >&2
	"$bin" version >&2 || true
	exit 1
fi
printf '%s\n' "$bin"
