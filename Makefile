# af — build, test, images, demo, bench.
# `make demo` and `make test` set everything up on a fresh machine.

SHELL := /bin/bash
GO ?= go
export GOFLAGS := -buildvcs=false
BIN := $(CURDIR)/bin
TOOLS := $(BIN)/tools

# MinIO has no semver tags; this is the pseudo-version of its last commit
# the Go module proxy serves (2026-02-12).
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
STATICCHECK_VERSION := v0.8.2
# The worker decodes gzip with ISA-L (Debian's libisal-dev to build,
# libisal2 to run; see internal/decompress). `make TAGS= build` builds a
# pure-Go worker that needs neither.
TAGS ?= isal

.PHONY: all build test test-short bench bench-compare deps host-deps lint images demo demo-down cluster cluster-down chaos clean

all: build

# VERSION is stamped into af and worker (`af --version`): GOFLAGS has
# -buildvcs=false (checkouts without .git must build), so Go records no
# revision; `git describe` says which commit this is. Outside a git
# checkout it is empty and internal/version falls back to the build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS := -X github.com/af-project/af/internal/version.version=$(VERSION)

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/af ./af
	CGO_ENABLED=$(if $(TAGS),1,0) $(GO) build -ldflags '$(LDFLAGS)' -tags '$(TAGS)' -o $(BIN)/worker ./worker

# deps installs the tools the tests need: MinIO into bin/tools (once), and
# the Debian packages (debootstrap, chromium, compressors) when missing.
deps: $(TOOLS)/minio host-deps

host-deps:
	bash scripts/host-deps.sh test

$(TOOLS)/minio:
	@mkdir -p $(TOOLS)
	@echo "installing MinIO $(MINIO_VERSION) into $(TOOLS) (a few minutes, once)"
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install github.com/minio/minio@$(MINIO_VERSION)

$(TOOLS)/staticcheck:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# The Go SDK (sdk/) is a module of its own (job modules require it without
# af's dependencies); vet, staticcheck and the tests cover both modules.
lint: $(TOOLS)/staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags '$(TAGS)' ./...
	cd sdk && $(GO) vet ./...
	$(TOOLS)/staticcheck ./...
	$(TOOLS)/staticcheck -tags '$(TAGS)' ./...
	cd sdk && $(TOOLS)/staticcheck ./...

# test runs every test, race detector on, against real MinIO, Docker, SMTP
# and headless Chromium. Screenshots and other test output go to out/test.
test: deps images
	@mkdir -p out/test
	AF_TEST_OUTPUT=$(CURDIR)/out/test $(GO) test -tags '$(TAGS)' -race -count=1 -timeout 45m ./...
	cd sdk && $(GO) test -race -count=1 ./...

test-short: deps
	$(GO) test -tags '$(TAGS)' -race -count=1 -short ./...
	cd sdk && $(GO) test -race -count=1 -short ./...

# images builds the base and example job images (no registry needed).
images:
	bash images/build.sh

# bench runs every benchmark and writes BENCHMARKS.md.
bench: deps images
	bash scripts/host-deps.sh bench
	bash bench/run.sh

# bench-compare times the paths a change can slow (container input, claim+
# complete, the job end to end) against BASE in one run: make bench-compare BASE=REV
bench-compare: deps images
	bash bench/compare.sh $(BASE) $(or $(ROUNDS),3)

# demo runs the whole system on this machine: MinIO, af serve, two
# workers, an SMTP sink, sample data, and two jobs (Python and Go).
demo: deps build images
	bash demo/run.sh

demo-down:
	bash demo/down.sh

# cluster runs af on several hosts on this machine for trying by hand: a
# private bridge and a network namespace each for af serve, MinIO, an SMTP
# sink and three workers (needs root; see scripts/cluster.sh). It prints
# the queue URL, a submit token and how to inject faults; cluster-down
# stops it and removes the namespaces.
cluster: deps build images
	bash scripts/cluster.sh up

cluster-down:
	bash scripts/cluster.sh down

# chaos runs the long chaos test on a hosttest cluster (several hosts in
# network namespaces, faults overlapping; needs root) and prints its figures
# as markdown for BENCHMARKS.md. AF_CHAOS=short for CI's profile,
# AF_CHAOS_SEED=N to replay a schedule.
chaos: deps build images
	bash bench/70-chaos.sh

clean:
	rm -rf $(BIN)
