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

# Every figure, measured in one run, as root (about 10 minutes on 2
# cores): the dataplane, join->reachable, apply->enforced, leave->purged,
# the agents at rest and the policy compiler (bench); the DNS resolver
# against NSD (bench/dns); the scale simulation (sim: Raft and state sync
# up to 1000 agents, gossip up to its own default pool). Then one
# table of all of it (bench/summary), printed and written to
# bench/REPORT.md. Each step's own tables and figures go to bench/results/.
# A step that fails shows as "–" in the table and fails the target.
# Installs the Debian tools it needs. (The Go micro-benchmarks:
# go test -bench . ./policy ./dnsd)
bench: bench-deps
	@set -o pipefail; started=$$(date +%s); load=$$(cut -d' ' -f1-3 /proc/loadavg); failed=; \
	out=bench/results; weft=$$PWD/$$out/weft; rm -rf $$out; mkdir -p $$out; \
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$weft ./cmd/weft || exit 1; \
	echo "=== bench (dataplane)"; \
	$(GO) run ./bench -weft $$weft -out $$out/dataplane.md -json $$out/dataplane.json >/dev/null || failed="$$failed bench"; \
	echo "=== bench/dns"; \
	$(GO) run ./bench/dns -weft $$weft -out $$out/dns.md -json $$out/dns.json >/dev/null || failed="$$failed bench/dns"; \
	echo "=== sim"; \
	$(GO) run ./sim -agents 1000 -out $$out/sim.txt -json $$out/sim.json >/dev/null || failed="$$failed sim"; \
	echo; \
	$(GO) run ./bench/summary -started $$started -load-start "$$load" -md bench/REPORT.md \
		-in $$out/dataplane.json -in $$out/dns.json -in $$out/sim.json || failed="$$failed bench/summary"; \
	if [ -n "$$failed" ]; then echo "make bench: failed:$$failed (their output is above; bench/results/ keeps what they wrote)" >&2; exit 1; fi

bench-deps:
	@command -v iperf3 >/dev/null && command -v nebula >/dev/null && command -v dnsperf >/dev/null && command -v nsd >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 nebula dnsperf nsd)

# Every fuzz target, one after another, each for FUZZTIME; a summary of
# the executions per target at the end. The seeds (f.Add and each
# package's testdata/fuzz/<Target>) also run with every `go test`. A
# failure is one that wrote a failing input; Go 1.26's coordinator may
# also fail a target with a bare "context deadline exceeded" at the end of
# FUZZTIME (go.dev/issue/75804, fixed in 1.27), which is reported as a
# flake.
FUZZTIME ?= 20s
# Minimizing a new input takes a worker away from fuzzing, uncounted:
# bound it by executions, or short runs do little else.
FUZZMINIMIZETIME ?= 50x
FUZZ_TARGETS := \
	config:FuzzLoad \
	agent:FuzzAdminAPI \
	cluster:FuzzRPCHandlers cluster:FuzzRPCJoin cluster:FuzzJoinCSR cluster:FuzzNodeMeta \
	cluster:FuzzFSMApply cluster:FuzzParseToken \
	policy:FuzzParse policy:FuzzMonotonic \
	dnsd:FuzzServeDNS \
	identity:FuzzParseID identity:FuzzSign identity:FuzzParsePEM

fuzz:
	@set -o pipefail; logs=$$(mktemp -d); failed=0; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "=== $$name (./$$pkg, $(FUZZTIME))"; \
		if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg 2>&1 | tee $$logs/$$name.log; then \
			echo ok > $$logs/$$name.result; \
		elif ! grep -q 'Failing input written to' $$logs/$$name.log && grep -qx '    context deadline exceeded' $$logs/$$name.log; then \
			echo "flake (go.dev/issue/75804: the -fuzztime deadline raced a worker; no failing input)" > $$logs/$$name.result; \
		else \
			echo FAIL > $$logs/$$name.result; failed=1; \
		fi; \
	done; \
	echo; echo "fuzz summary (FUZZTIME=$(FUZZTIME)):"; \
	for t in $(FUZZ_TARGETS); do \
		name=$${t##*:}; \
		execs=$$(grep -o 'execs: [0-9]*' $$logs/$$name.log | tail -1 | cut -d' ' -f2); \
		printf '  %-16s %10s execs  %s\n' "$$name" "$${execs:-0}" "$$(cat $$logs/$$name.result)"; \
	done; \
	rm -rf $$logs; exit $$failed

# A small cluster of namespace hosts (as root): prints weft members, then
# keeps running until Ctrl-C and removes every namespace it made.
# DEMO_ONESHOT=1 prints and exits.
demo:
	WEFT_DEMO=1 WEFT_DEMO_ONESHOT=$(DEMO_ONESHOT) $(GO) test -count=1 -timeout 0 -run '^TestDemo$$' -v ./e2e

clean:
	rm -rf bin dist e2e/test.log
