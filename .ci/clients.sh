#!/usr/bin/env bash
# clients.sh runs the client suites of clients/ (see clients/README.md): real
# IPFS Cluster clients that nobody here wrote, driving a real ingestd process
# end to end.
#
#   clients/go  the ipfs-cluster v1.1.6 Go client, `go test` in its own module
#   clients/js  @nftstorage/ipfs-cluster (exact version in package.json),
#               `npm ci && node --test`
#
# It needs only Go, node >= 20 with npm, and access to the Go module proxy and
# the npm registry: kubo (the CID oracle) is built by .ci/kubo.sh, the Go
# client comes through clients/go/go.sum, the JS client through
# clients/js/package-lock.json. Both suites run even if the first fails; the
# exit status is non-zero if either failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if ((node_major < 20)); then
	echo "clients.sh: node >= 20 is required (found: $(node --version 2>&1 || echo none))" >&2
	exit 1
fi

INGESTD_IPFS_BIN="$(bash "$repo/.ci/kubo.sh")"
export INGESTD_IPFS_BIN
# kubo was just built: a test that cannot use it must fail, never skip.
export INGESTD_REQUIRE_KUBO=1

status=0

echo "clients.sh: clients/go (ipfs-cluster v1.1.6 Go client)" >&2
(cd "$repo/clients/go" && go test -count=1 ./...) || status=1

echo "clients.sh: clients/js (@nftstorage/ipfs-cluster)" >&2
(
	cd "$repo/clients/js"
	# The lockfile may only fetch from the configured npm registry, and only
	# content whose integrity hash it records.
	node - "$(npm config get registry)" <<'EOF'
const fs = require('node:fs')
const registry = process.argv[2].replace(/\/?$/, '/')
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8'))
const bad = []
for (const [name, entry] of Object.entries(lock.packages ?? {})) {
	if (name === '') continue
	if (entry.link) bad.push(`${name} is a link to ${entry.resolved}`)
	if (!entry.integrity) bad.push(`${name} has no integrity hash`)
	if (entry.resolved && !entry.resolved.startsWith(registry)) bad.push(`${name} is fetched from ${entry.resolved}`)
}
if (bad.length > 0) {
	console.error(`clients.sh: package-lock.json fetches from outside ${registry}:\n  ${bad.join('\n  ')}`)
	process.exit(1)
}
EOF
	npm ci --no-audit --no-fund
	node --test
) || status=1

exit "$status"
