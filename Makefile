# vxland — userspace VXLAN overlay daemon.
# Targets: build, test, lint, demo. Tests that build namespaces need root.

export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
BIN     := bin
PKGS    := ./...
# The whole suite is bounded; each integration test also bounds itself.
TESTTIMEOUT ?= 9m
# vxland --version and vxland_build_info say which commit this is; a
# plain go build says "devel".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build test lint vet fmt demo clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# The CNI chain test's plugins are built once into the user's cache; the
# first build (a minute or more) runs here, outside the suite's bound.
test:
	$(GO) test -count=1 -timeout 10m -run '^TestCNIPlugins$$' ./cmd/vxland
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) $(PKGS)

vet:
	$(GO) vet $(PKGS)

# Everything also vets for arm64 (no poll(2) there, for one) and 386
# (32-bit lengths in the system call structures); the data plane also vets
# off Linux, through its stubs, and every command builds there.
CROSSPKGS := ./encap/... ./overlay/...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	GOARCH=arm64 $(GO) vet $(PKGS)
	GOARCH=386 $(GO) vet $(PKGS)
	GOOS=darwin $(GO) vet $(CROSSPKGS)
	GOOS=darwin $(GO) build $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Three hosts and six containers as network namespaces, vxland with etcd
# discovery on each host; needs root. vxdemo removes everything on exit and
# on Ctrl-C.
demo:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/vxland ./cmd/vxdemo
	$(BIN)/vxdemo --vxland $(BIN)/vxland

clean:
	rm -rf $(BIN)

# Benchmarks. bench and bench-quick need root and iperf3, build
# hosts as network namespaces and write results/<timestamp>/; see bench/.
# BENCHFLAGS passes flags to vxbench, e.g. BENCHFLAGS="--underlay wire-like",
# or BENCHFLAGS="--vxland-base old/vxland" to compare with another vxland build.
# bench-micro prints Go micro-benchmarks in the form benchstat reads:
#   make bench-micro > old.txt; ...; make bench-micro > new.txt; benchstat old.txt new.txt
BENCHFLAGS ?=
BENCHCOUNT ?= 6
MICROPKGS  := ./encap ./overlay ./overlay/offload ./overlay/fdb ./overlay/poller ./overlay/udp ./overlay/tap

# bench-control measures the etcd control plane with simulated hosts on a
# three-member etcd cluster in one process (no root needed) and writes
# results/control-<timestamp>/; CTLBENCHFLAGS="--full" for 100, 300 and 1000
# hosts. See bench/control.
CTLBENCHFLAGS ?=

.PHONY: bench bench-quick bench-micro bench-build bench-control

# Only the two programs the bench runs, so that it does not depend on the
# rest of cmd/ building.
bench-build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/vxland ./cmd/vxbench

bench: bench-build
	$(BIN)/vxbench --vxland $(BIN)/vxland $(BENCHFLAGS)

bench-quick: bench-build
	$(BIN)/vxbench --quick --vxland $(BIN)/vxland $(BENCHFLAGS)

bench-control:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/vxctlbench
	$(BIN)/vxctlbench $(CTLBENCHFLAGS)

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) $(MICROPKGS)
