#!/usr/bin/env bash
# fuzz.sh TARGET PKG: a short run of one fuzz target (FUZZTIME, default 15s).
#
# Go's fuzzing engine sometimes ends a run whose time is up with
# "context deadline exceeded" and no failing input (a worker was still
# minimizing a new interesting input when the time ran out): that is the
# engine's deadline, not a finding. Such a run is tried once more; any
# other failure, or a second one, fails.
set -uo pipefail
target="$1"
pkg="$2"
run() {
	go test -run='^$' -fuzz="^${target}\$" -fuzztime="${FUZZTIME:-15s}" -test.fuzzminimizetime=3s "$pkg" 2>&1
}
out="$(run)"
status=$?
printf '%s\n' "$out"
if ((status != 0)) && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
	echo "fuzz.sh: $target ended on the engine's deadline without a failing input; running it once more" >&2
	out="$(run)"
	status=$?
	printf '%s\n' "$out"
fi
exit "$status"
