# Sluice. `make demo` and `make test` set up everything they need on a fresh Debian machine
# (as root): Debian packages, kube-apiserver/etcd built into a cache, the binaries.

SHELL        := /bin/bash
VERSION      ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X github.com/sluice-lb/sluice/internal/version.Version=$(VERSION)
SLUICE_CACHE ?= /var/cache/sluice
FUZZTIME     ?= 5s
TEST_TIMEOUT ?= 30m
export SLUICE_CACHE

.PHONY: all build generate verify-generated lint deps kube-binaries test test-unit fuzz demo clean

all: build

build: ## the binaries, into bin/
	@echo "build: sluice-agent, sluicectl ($(VERSION))"
	@go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

generate: kube-binaries ## regenerate bpf2go output, deepcopy, CRD YAML and manifests/sluice.yaml (needs clang: make deps)
	go generate ./api/... ./bpf/...
	hack/render-manifests.sh

verify-generated: deps kube-binaries
	@hack/verify-generated.sh

lint: ## gofmt + go vet + staticcheck
	@echo "lint: gofmt"
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "lint: not gofmt-ed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@echo "lint: go vet"
	@go vet ./...
	@echo "lint: staticcheck"
	@go tool staticcheck ./...

deps: ## Debian packages (installed when missing, as root)
	@hack/install-deps.sh

kube-binaries: ## kube-apiserver, etcd, kube-proxy, kubectl and helm built from the Go module proxy, cached
	@echo "kube-binaries: kube-apiserver, etcd, kube-proxy, kubectl, helm (cached in $(SLUICE_CACHE)/kube; the first build takes several minutes)"
	@hack/kube-binaries.sh >/dev/null

# Every tier in one run: unit, privileged (BPF, netns), interop (FRR, BIRD, gobgpd) and api
# (a real kube-apiserver). Under CI=true a missing prerequisite fails its test.
test: deps kube-binaries verify-generated lint fuzz
	@echo "test: unit, privileged, interop and api tiers (go test -race)"
	@KUBEBUILDER_ASSETS=$$(hack/kube-binaries.sh) PRIVILEGED_TESTS=1 \
	  go tool gotestsum --format pkgname-and-test-fails --format-hide-empty-pkg -- \
	  -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-unit: ## the unit tier only: no root, no daemons
	go test -count=1 ./...

fuzz: ## each fuzz target for FUZZTIME (default 5s)
	@for target in $$(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sort -u | sed 's/func //'); do \
	  pkg=$$(dirname $$(grep -rlE --include='*_test.go' "^func $$target\(" . | head -1)); \
	  echo "fuzz: $$target in $$pkg for $(FUZZTIME)"; \
	  PRIVILEGED_TESTS=1 go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/sluice-fuzz.log 2>&1 || { cat /tmp/sluice-fuzz.log; rm -f /tmp/sluice-fuzz.log; exit 1; }; \
	done; rm -f /tmp/sluice-fuzz.log

demo: deps build ## a lab of namespaces running the agent on examples/quickstart.yaml
	@go run ./test/demo -agent bin/sluice-agent -sluicectl bin/sluicectl -config examples/quickstart.yaml

.PHONY: bench
# Numbers, not pass/fail (docs/benchmarks.md): XDP ns/packet with BPF_PROG_RUN, programming 10k
# Services through the Syncer, the maps' kernel memory. As root. BENCH_WRITE=1 also rewrites
# the numbers in docs/benchmarks.md; BENCH_FLAGS passes e.g. -rounds 3.
bench: deps kube-binaries ## benchmarks: one table of our numbers and their ratios to the targets
	@KUBEBUILDER_ASSETS=$$(hack/kube-binaries.sh) go run ./test/bench $(BENCH_FLAGS) $(if $(BENCH_WRITE),-write docs/benchmarks.md)

clean:
	rm -rf bin/
