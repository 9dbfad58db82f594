# vxland — userspace VXLAN overlay daemon.
# Targets: build, test, lint, fuzz, demo, install, test-faults, soak. Tests
# that build namespaces need root.

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

.PHONY: all build test lint vet fmt fuzz demo clean install static test-faults soak

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# A static vxland (no cgo, no dynamic loader), as the container image
# ships it: the Dockerfile runs this target.
static:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/vxland ./cmd/vxland

# The CNI chain test's plugins are built once into the user's cache; the
# first build (a minute or more) runs here, outside the suite's bound.
# deploy/ is a module of its own (the Kubernetes API types stay out of
# go.mod): go test ./... does not enter it.
test:
	$(GO) test -count=1 -timeout 10m -run '^TestCNIPlugins$$' ./cmd/vxland
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) $(PKGS)
	cd deploy && $(GO) test -count=1 -timeout 5m ./...

# The fault suite: one fault a test (etcd leader killed, etcd killed
# and restarted, etcd paused past the lease TTL, underlay link cut,
# vxland SIGKILLed, 100,000 source MACs, a million malformed datagrams,
# oversize frames), each with its figures; a few minutes in all. make
# test runs two of them, smaller. See docs/RELIABILITY.md.
test-faults:
	$(GO) test -tags faults -count=1 -timeout 15m -run '^TestFault' -v ./cmd/vxland

# Load and churn for SOAK_DURATION (default 10m), footprint sampled
# every few seconds and checked flat.
SOAK_DURATION ?= 10m
soak:
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags soak -count=1 -timeout 3h -run '^TestSoak$$' -v ./cmd/vxland

vet:
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

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

# Every fuzz target of the module, one after the other, FUZZTIME each;
# fails if any finds a failing input, which it leaves in the package's
# testdata/fuzz/ (make test runs those again).
FUZZTIME ?= 30s

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Three hosts and six containers as network namespaces, vxland with etcd
# discovery on each host; needs root. vxdemo removes everything on exit and
# on Ctrl-C.
demo:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/vxland ./cmd/vxdemo
	$(BIN)/vxdemo --vxland $(BIN)/vxland

clean:
	rm -rf $(BIN)

# Installation, as a distribution's package build runs it:
#   make install DESTDIR=$(pwd)/pkgroot PREFIX=/usr
# PREFIX is baked into nothing but the units' ExecStart; DESTDIR only
# stages the tree. The env files are configuration: they go to
# $(SYSCONFDIR)/vxland, which stays /etc whatever PREFIX is, and an
# existing one is never overwritten.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
UNITS      := contrib/systemd/vxland.service contrib/systemd/vxland-flannel.service
ENVFILES   := contrib/systemd/vxland.env contrib/systemd/vxland-flannel.env

install:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/vxland ./cmd/vxland
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(SYSCONFDIR)/vxland
	install -m 0755 $(BIN)/vxland $(DESTDIR)$(BINDIR)/vxland
	for u in $(UNITS); do \
		sed -e 's|/usr/local/bin/vxland|$(BINDIR)/vxland|' -e 's|/etc/vxland/|$(SYSCONFDIR)/vxland/|' $$u > $(DESTDIR)$(SYSTEMDDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$${u##*/} || exit 1; \
	done
	for e in $(ENVFILES); do \
		t=$(DESTDIR)$(SYSCONFDIR)/vxland/$${e##*/}; \
		if [ -e $$t ]; then echo "$$t exists: kept"; else install -m 0600 $$e $$t || exit 1; fi; \
	done

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

.PHONY: bench bench-quick bench-micro bench-build bench-control bench-control-real

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

# bench-control-real adds a real vxland (root: network namespaces) that
# joins 20 simulated hosts x 500 MACs, 10,000 remote MACs, and measures
# its memory, its lists of etcd and forwarding to the MAC published last.
bench-control-real:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/vxland ./cmd/vxctlbench
	$(BIN)/vxctlbench --hosts 20 --macs 500 --real-host $(BIN)/vxland $(CTLBENCHFLAGS)

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) $(MICROPKGS)
