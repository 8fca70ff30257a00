# weft — see README.md. Every target runs from a fresh clone after .ci/run's installs.
GO       ?= go
BIN      ?= bin/weft
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/weft-mesh/weft/internal/version.Version=$(VERSION)
E2E_TIMEOUT ?= 20m
SHELL    := /bin/bash

.PHONY: build test unit e2e bench demo fuzz lint clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/weft

# Unit tests, then (as root) the namespace tests. WEFT_E2E_REQUIRED=1 makes
# a skipped namespace test a failure, so CI cannot pass without them.
test: unit e2e

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	$(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseID -fuzztime 30s ./identity

# A small cluster of namespace hosts (as root): prints weft members, then
# keeps running until Ctrl-C and removes every namespace it made.
# DEMO_ONESHOT=1 prints and exits.
demo:
	WEFT_DEMO=1 WEFT_DEMO_ONESHOT=$(DEMO_ONESHOT) $(GO) test -count=1 -timeout 0 -run '^TestDemo$$' -v ./e2e

clean:
	rm -rf bin dist e2e/test.log
