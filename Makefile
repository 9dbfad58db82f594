# vxland — userspace VXLAN overlay daemon.
# Targets: build, test, lint, demo. Tests that build namespaces need root.

export PATH := $(PATH):/usr/local/go/bin
GO      ?= go
BIN     := bin
PKGS    := ./...
# The whole suite is bounded; each integration test also bounds itself.
TESTTIMEOUT ?= 9m

.PHONY: all build test lint vet fmt demo clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

test:
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) $(PKGS)

vet:
	$(GO) vet $(PKGS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

demo:
	@echo "make demo arrives with the etcd control plane (issue 3)." >&2
	@echo "Until then, see README.md for a two-host static-peer setup." >&2
	@exit 1

clean:
	rm -rf $(BIN)
