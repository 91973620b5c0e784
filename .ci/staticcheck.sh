#!/usr/bin/env bash
# staticcheck.sh builds staticcheck (honnef.co/go/tools, pinned in the
# tools module .ci/staticcheck) into .cache/bin and prints its path.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="$repo/.cache/bin/staticcheck"
if [[ -x "$bin" ]] && "$bin" -version 2>/dev/null | grep -q '0\.8\.2'; then
	printf '%s\n' "$bin"
	exit 0
fi
echo "staticcheck.sh: building staticcheck into $bin" >&2
mkdir -p "$(dirname "$bin")"
tmp="$bin.tmp.$$"
(cd "$repo/.ci/staticcheck" && go build -o "$tmp" honnef.co/go/tools/cmd/staticcheck) >&2
mv "$tmp" "$bin"
printf '%s\n' "$bin"
