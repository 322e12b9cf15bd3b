# numberd. `make test` is what CI runs (.ci/run); see scripts/test.sh.

GO ?= go
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt
# Extra `go test` flags for `make test`, e.g. GOTESTFLAGS='-run TestRefill'.
GOTESTFLAGS ?=
export GOTESTFLAGS
# Arguments for `make run`, e.g. ARGS='-h'.
ARGS ?=

# The Go files gofmt checks in scripts/test.sh: tracked and untracked, not ignored.
GOFILES = $(wildcard $(shell git ls-files --cached --others --exclude-standard -- '*.go' 2>/dev/null))

.DEFAULT_GOAL := build
.PHONY: build run test generate fmt vet clean

build:
	$(GO) build -o bin/numberd ./cmd/numberd

run:
	$(GO) run ./cmd/numberd $(ARGS)

test:
	bash scripts/test.sh

generate:
	$(GO) generate ./...

fmt:
	$(if $(GOFILES),$(GOFMT) -l -w $(GOFILES),@echo "no Go files")

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .tmp
	rm -f numberd
