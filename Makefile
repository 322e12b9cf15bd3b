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
.PHONY: build run test generate fmt vet clean loadtest bench nemesis

build:
	$(GO) build -o bin/numberd ./cmd/numberd

run:
	$(GO) run ./cmd/numberd $(ARGS)

test:
	bash scripts/test.sh

# The Jepsen-style nemesis test (test/nemesis) alone, on the throwaway services
# scripts/test.sh starts: a minute with a fixed seed; NEMESIS=30m runs 30
# minutes with a random seed, NEMESIS_SEED=n chooses the seed. It prints the
# run's report; a failed run leaves its history in .tmp/nemesis/<run>/.
# `make test` runs the same package for a minute with the fixed seed.
nemesis:
	@mkdir -p .tmp/nemesis && touch .tmp/nemesis/.started; rc=0; \
	GOTESTFLAGS="$(GOTESTFLAGS)" bash scripts/test.sh ./test/nemesis/ || rc=$$?; \
	for r in $$(find .tmp/nemesis -name report.txt -newer .tmp/nemesis/.started); do \
		printf '\n==> %s\n' "$$r"; cat "$$r"; \
	done; \
	exit $$rc

# k6 scenarios against a throwaway numberd, then the duplicate check; see
# scripts/loadtest.sh (MODE=distributed, SCENARIO=mixed, DURATION=1m, …).
loadtest:
	bash scripts/loadtest.sh

# numberd against the constant-JSON and one-INCR baselines, alternately, with
# wrk and an open-loop generator; see scripts/bench.sh and docs/PERFORMANCE.md.
bench:
	bash scripts/bench.sh

generate:
	$(GO) generate ./...

fmt:
	$(if $(GOFILES),$(GOFMT) -l -w $(GOFILES),@echo "no Go files")

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .tmp
	rm -f numberd
