# The one command that runs every test: `make test`. CI runs exactly it
# (.ci/run). It builds kubo v0.42.0 (tests use real kubo as the CID oracle
# and as the IPFS peers) and ipfs-cluster-ctl 1.1.6 (the client ingestd must
# serve unchanged) first, then vet, the whole suite, the race detector, and
# a short run of every fuzz target.

GO ?= go
FUZZTIME ?= 15s

.PHONY: test vet unit race fuzz build run bench

build:
	$(GO) build -o ingestd ./cmd/ingestd

run:
	$(GO) run ./cmd/ingestd

test: vet unit race hostile clients cluster-test fuzz

vet:
	$(GO) vet ./...
	$(GO) vet -tags hostile ./cmd/ingestd
	@test -z "$$(gofmt -l .)" || (echo "gofmt needed:"; gofmt -l .; exit 1)
	$$(bash .ci/staticcheck.sh) ./...
	$$(bash .ci/staticcheck.sh) -tags hostile ./cmd/ingestd
	@$(GO) mod tidy -diff || (echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1)

unit:
	INGESTD_IPFS_BIN=$$(bash .ci/kubo.sh) INGESTD_CTL_BIN=$$(bash .ci/ctl.sh) INGESTD_REQUIRE_KUBO=1 $(GO) test -count=1 -shuffle=on ./...

# The race detector slows hashing about tenfold, so it runs the short suite
# (the large-file conformance cases run above, without it).
race:
	INGESTD_IPFS_BIN=$$(bash .ci/kubo.sh) INGESTD_CTL_BIN=$$(bash .ci/ctl.sh) INGESTD_REQUIRE_KUBO=1 $(GO) test -count=1 -race -short ./...

# The hostile-client suite (docs/reliability.md): the real binary against
# clients that hold connections, stall, trickle or never read.
.PHONY: hostile
hostile:
	$(GO) test -count=1 -tags hostile -run '^TestHostile' -timeout 15m ./cmd/ingestd

# Minimizing a new input may take the whole run (the default allows 60 s),
# so it is capped: a short run is for finding, not for polishing.
FUZZ = FUZZTIME=$(FUZZTIME) bash .ci/fuzz.sh

fuzz:
	$(FUZZ) FuzzReader ./ingest/multipart
	$(FUZZ) FuzzFramerMatchesStdlib ./ingest/multipart
	$(FUZZ) FuzzParseAddParams ./restapi
	$(FUZZ) FuzzParsePinOptions ./restapi
	$(FUZZ) FuzzRouter ./restapi
	$(FUZZ) FuzzImport ./ingest/car
	$(FUZZ) FuzzImportUpload ./ingest/unixfs

# Real IPFS Cluster clients (the v1.1.6 Go client, @nftstorage/ipfs-cluster)
# driving ingestd end to end; see clients/README.md.
.PHONY: clients
clients:
	bash .ci/clients.sh

# A real 3-peer IPFS Cluster (ipfs-cluster-service 1.1.6, CRDT consensus,
# a kubo daemon per peer) for the tests of ingestd in front of a cluster
# (issue 9). It may only run in a network namespace that has nothing but
# loopback, so it needs root; .ci/netns-test.sh builds everything first and
# sets the namespace up. Not part of `test`. See internal/clustertest.
.PHONY: cluster-test
cluster-test:
	bash .ci/netns-test.sh ./internal/clustertest -count=1
	bash .ci/netns-test.sh ./restapi -run '^TestClusterFront' -count=1

# The numbers in BENCHMARKS.md; see that file for what each one compares.
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=3x ./ingest/unixfs ./ingest/car
	INGESTD_IPFS_BIN=$$(bash .ci/kubo.sh) $(GO) test -run='^$$' -bench=. -benchtime=3x -timeout=30m ./bench
