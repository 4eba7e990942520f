# syntax=docker/dockerfile:1
# Strait's container image: both binaries, static, on distroless as a
# non-root user. Build from the repository root:
#
#   docker build -t strait:dev --build-arg VERSION=$(git describe --always) .
#
# The same image runs the control plane (the default entrypoint, strait)
# and the dataplane node (command: strait-dataplane); deploy/kubernetes
# uses it for both. deploy/dockerfile_test.go runs this file's build
# command as a plain `go build` and checks the binaries it makes.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
# go.mod replaces sipgo with its fork in third_party/sipgo (see its README.md).
COPY third_party/sipgo/go.mod third_party/sipgo/go.sum ./third_party/sipgo/
RUN go mod download
COPY . .
ARG VERSION=dev
# Static (no cgo, so no libc to match), reproducible paths, no symbol table.
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w -X github.com/strait-sbc/strait/dataplane/node.Version=${VERSION}" -o /out/ ./cmd/strait ./cmd/strait-dataplane

# distroless/static: CA certificates, /etc/passwd with nonroot (65532),
# tzdata; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/strait /out/strait-dataplane /usr/local/bin/
USER 65532:65532
# strait: HTTPS/WSS and API, SIP UDP/TCP, SIP TLS.
EXPOSE 8443/tcp 5060/udp 5060/tcp 5061/tcp
# strait-dataplane: WebRTC (shared), gRPC, metrics and probes; plain RTP
# pairs come from --rtp-ports (host networking, nothing to publish).
EXPOSE 20000-20003/udp 9090/tcp 9091/tcp
ENTRYPOINT ["/usr/local/bin/strait"]
