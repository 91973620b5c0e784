#!/usr/bin/env bash
# ctl.sh builds the real ipfs-cluster-ctl 1.1.6, the client ingestd must
# serve unchanged, and prints its absolute path on stdout (progress goes to
# stderr). It has its own tools module (.ci/ctl) so that its dependencies
# cannot move kubo's in .ci/tools. $INGESTD_CTL_BIN, if executable, is used
# as is.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="$repo/.cache/bin/ipfs-cluster-ctl"

if [[ -n "${INGESTD_CTL_BIN:-}" && -x "${INGESTD_CTL_BIN}" ]]; then
	printf '%s\n' "$INGESTD_CTL_BIN"
	exit 0
fi
if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q ' 1\.1\.6$'; then
	printf '%s\n' "$bin"
	exit 0
fi
echo "ctl.sh: building ipfs-cluster-ctl 1.1.6 into $bin" >&2
mkdir -p "$(dirname "$bin")"
tmp="$bin.tmp.$$"
(cd "$repo/.ci/ctl" && go build -o "$tmp" github.com/ipfs-cluster/ipfs-cluster/cmd/ipfs-cluster-ctl) >&2
mv "$tmp" "$bin"
printf '%s\n' "$bin"
