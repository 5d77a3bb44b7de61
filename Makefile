# credbroker. `make dev` runs a throwaway broker; `make test` runs every check.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

# Tools, pinned. They are built from the Go module proxy into .bin/.
BUF_VERSION               := v1.75.0
PROTOC_GEN_GO_VERSION     := v1.36.12
PROTOC_GEN_CONNECT_VERSION := v1.21.1
STATICCHECK_VERSION       := v0.8.2
# gitleaks scans the tree for secrets in make lint (.gitleaks.toml).
GITLEAKS_VERSION          := v8.30.1
# Ory Hydra, the OIDC provider of the identity tests (test/harness/hydra.go).
HYDRA_VERSION             := v2.3.0
# helm renders the chart in deploy/helm for test/deploy (make test); a big
# build, done once per version.
HELM_VERSION              := v4.3.2
# promtool of Prometheus 3.16 (its Go module is tagged v0.316.0), for the alert
# rules' unit tests. Big: built once, by `make alerts`, not by `make tools`;
# -tags remove_all_sd leaves out the service discoveries (cloud SDKs) rule
# tests never use: a cold build took 166 s instead of 586 s here.
PROMTOOL_VERSION          := v0.316.0

BIN := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
GO ?= go
TEST_FLAGS ?= -race -count=1 -timeout 20m

TOOLS := $(BIN)/buf-$(BUF_VERSION) $(BIN)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
	$(BIN)/protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_VERSION) $(BIN)/staticcheck-$(STATICCHECK_VERSION) \
	$(BIN)/gitleaks-$(GITLEAKS_VERSION)

.PHONY: build dev test lint generate docs bench tools hydra helm alerts clean

build:
	$(GO) build -ldflags "-X main.version=$$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/credbroker ./cmd/credbroker

dev: build
	./bin/credbroker dev

test: lint build helm alerts
	$(GO) test $(TEST_FLAGS) ./...

# The Prometheus rules are valid and pass their unit tests (deploy/prometheus).
alerts: $(BIN)/promtool-$(PROMTOOL_VERSION)
	$(BIN)/promtool check rules deploy/prometheus/alerts.yaml
	$(BIN)/promtool test rules deploy/prometheus/alerts_test.yaml

lint: tools
	@echo "gofmt"; out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "go vet"; $(GO) vet ./...
	@echo "staticcheck"; staticcheck ./...
	@echo "buf lint"; buf lint
	@echo "generated code is up to date"; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
		buf generate --output $$tmp; \
		stale=0; for f in $$(cd $$tmp && find proto -type f); do diff $$tmp/$$f $$f || stale=1; done; \
		if [ $$stale = 1 ]; then echo "generated code is stale: run make generate and commit the result"; exit 1; fi
	@echo "gitleaks"; tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
		git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do \
			if [ -f "$$f" ]; then printf '%s\0' "$$f"; fi; done | xargs -0 -r cp --parents -t $$tmp; \
		(cd $$tmp && gitleaks dir --no-banner --no-color --verbose --redact -c $(CURDIR)/.gitleaks.toml .) || \
			{ echo "gitleaks found a secret (shown redacted above, with its file and line): remove it and rotate it; if it provably is none, allow that one value in .gitleaks.toml, saying why"; exit 1; }
	@echo "example configs pass config check --strict"; $(GO) test ./test/e2e -run '^TestExampleConfigs$$' -count=1

generate: tools
	buf generate

# docs/cli.md is generated from the command tree; TestCLIReference (part of
# make test) fails while it is stale.
docs:
	$(GO) test ./cmd/credbroker -run '^TestCLIReference$$' -count=1 -update-cli-doc

# bench first makes sure PostgreSQL collects pg_stat_statements: the first
# time, .ci/pg-stat-statements RESTARTS the cluster (see the script). Should it
# fail, the bench runs without the statement profile and says so.
bench: build
	.ci/pg-stat-statements || echo "bench: .ci/pg-stat-statements failed; the bench runs without pg_stat_statements"
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
$(BIN)/gitleaks-$(GITLEAKS_VERSION):
	GOBIN=$(BIN) $(GO) install github.com/zricethezav/gitleaks/v8@$(GITLEAKS_VERSION)
	touch $@

helm: $(BIN)/helm-$(HELM_VERSION)
$(BIN)/helm-$(HELM_VERSION):
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	touch $@

$(BIN)/promtool-$(PROMTOOL_VERSION):
	GOBIN=$(BIN) $(GO) install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	touch $@

# hydra is built inside its own module, as its go.mod wants: -tags sqlite for
# DSN=memory, its gobuffalo/pop => ory/pop replace. Its replace of
# hydra-client-go points at a directory the module zip leaves out, so that
# one is dropped for the published v2.2.1 it requires. The module cache is
# read-only, hence the copy. Cached by version in .bin/.
hydra: $(BIN)/hydra-$(HYDRA_VERSION)
$(BIN)/hydra-$(HYDRA_VERSION):
	mkdir -p $(BIN); tmp=$$(mktemp -d); trap 'chmod -R u+w $$tmp; rm -rf $$tmp' EXIT; \
	dir=$$(cd $$tmp && $(GO) mod download -json github.com/ory/hydra/v2@$(HYDRA_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	test -n "$$dir"; cp -r "$$dir" $$tmp/src; chmod -R u+w $$tmp/src; cd $$tmp/src; \
	$(GO) mod edit -dropreplace github.com/ory/hydra-client-go/v2; \
	$(GO) build -mod=mod -tags sqlite -o $@.tmp . ; mv $@.tmp $@

clean:
	rm -rf bin .bin
