# credbroker. `make dev` runs a throwaway broker; `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# Tools, pinned. They are built from the Go module proxy into .bin/.
BUF_VERSION               := v1.75.0
PROTOC_GEN_GO_VERSION     := v1.36.12
PROTOC_GEN_CONNECT_VERSION := v1.21.1
STATICCHECK_VERSION       := v0.8.2

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
GO ?= go
TEST_FLAGS ?= -race -count=1 -timeout 20m

TOOLS := $(BIN)/buf-$(BUF_VERSION) $(BIN)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
	$(BIN)/protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_VERSION) $(BIN)/staticcheck-$(STATICCHECK_VERSION)

.PHONY: build dev test lint generate bench tools clean

build:
	$(GO) build -ldflags "-X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/credbroker ./cmd/credbroker

dev: build
	./bin/credbroker dev

test: lint build
	$(GO) test $(TEST_FLAGS) ./...

lint: tools
	@echo "gofmt"; out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "go vet"; $(GO) vet ./...
	@echo "staticcheck"; staticcheck ./...
	@echo "buf lint"; buf lint
	@echo "generated code is up to date"; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
		buf generate --output $$tmp; \
		diff -r $$tmp/proto/credbroker/v1/credbrokerv1connect proto/credbroker/v1/credbrokerv1connect && \
		diff $$tmp/proto/credbroker/v1/credbroker.pb.go proto/credbroker/v1/credbroker.pb.go || \
		{ echo "generated code is stale: run make generate and commit the result"; exit 1; }

generate: tools
	buf generate

bench: build
	CREDBROKER_TEST_BINARY=$(CURDIR)/bin/credbroker $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 40m ./test/bench/ -v $(BENCH_FLAGS)

tools: $(TOOLS)

$(BIN)/buf-$(BUF_VERSION):
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	touch $@
$(BIN)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	touch $@
$(BIN)/protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_VERSION):
	GOBIN=$(BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_VERSION)
	touch $@
$(BIN)/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	touch $@

clean:
	rm -rf bin .bin
