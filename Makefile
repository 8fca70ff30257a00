# weft — see README.md. Every target runs from a fresh clone after .ci/run's installs.
GO       ?= go
BIN      ?= bin/weft
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/weft-mesh/weft/internal/version.Version=$(VERSION)
E2E_TIMEOUT ?= 20m
SHELL    := /bin/bash

.PHONY: build test unit e2e bench bench-deps demo fuzz package clean

# A static binary: it runs on any Linux the packages target.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/weft

# .deb and .rpm in dist/ (nfpm, pinned in packaging/build.sh).
package: build
	VERSION=$(VERSION) WEFT_BIN=$(BIN) packaging/build.sh

# Unit tests, then (as root) the namespace tests. WEFT_E2E_REQUIRED=1 makes
# a skipped namespace test a failure, so CI cannot pass without them.
test: unit e2e

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e

# Figures, as root: the dataplane (iperf3 over the underlay, bare
# wireguard-go, weft and Nebula), apply->enforced, the plan compiler, and
# the DNS resolver against NSD; then the Go micro-benchmarks. Installs the
# Debian tools it needs.
bench: bench-deps
	$(GO) run ./bench -out bench/last.txt
	$(GO) run ./bench/dns -out bench/dns/last.txt
	$(GO) test -run '^$$' -bench . -benchtime 2s ./policy ./dnsd

bench-deps:
	@command -v iperf3 >/dev/null && command -v nebula >/dev/null && command -v dnsperf >/dev/null && command -v nsd >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 nebula dnsperf nsd)

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseID -fuzztime 30s ./identity

# A small cluster of namespace hosts (as root): prints weft members, then
# keeps running until Ctrl-C and removes every namespace it made.
# DEMO_ONESHOT=1 prints and exits.
demo:
	WEFT_DEMO=1 WEFT_DEMO_ONESHOT=$(DEMO_ONESHOT) $(GO) test -count=1 -timeout 0 -run '^TestDemo$$' -v ./e2e

clean:
	rm -rf bin dist e2e/test.log
