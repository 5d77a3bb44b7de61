# syntax=docker/dockerfile:1
#
# credbroker's container image: one static binary on distroless, non-root.
#
#   docker build -t credbroker:$(git describe --always --dirty) .
#
# The build stage runs `make build`, the same `go build` (and -ldflags
# version stamp, from git describe: the build context keeps .git) that the
# Makefile runs everywhere else, with CGO_ENABLED=0: the binary needs no cgo
# (only the standard library's net and os/user have cgo variants, and their
# pure-Go ones are used), and distroless/static has no libc. test/deploy
# checks that this file still calls `make build` and that the final stage
# runs as a non-root user; the image itself is not built by `make test`.

# Pin by digest in your registry mirror; the Go version is go.mod's.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    make build && ./bin/credbroker version

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/credbroker /usr/local/bin/credbroker
USER 65532:65532
# API (TLS) and metrics; see deploy/helm/credbroker for the config.
EXPOSE 8443 9420
ENTRYPOINT ["/usr/local/bin/credbroker"]
CMD ["serve", "--config", "/etc/credbroker/config/credbroker.yaml"]
