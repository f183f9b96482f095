# syntax=docker/dockerfile:1
#
# distgate container image: a static binary on distroless, run as non-root,
# configured through DISTGATE_* environment variables (or a file mounted at
# /etc/distgate/distgate.toml with DISTGATE_CONFIG set to it).
#
# UNBUILT: no container engine runs where this file was written, so it has
# never been built or run. Build it with:
#   docker build -t distgate .
#   docker run --rm distgate version
#
# Example (one gate, node on the host's loopback, --network host):
#   docker run --network host \
#     -e DISTGATE_LISTEN=203.0.113.5:9100 -e DISTGATE_UPSTREAM=127.0.0.1:9100 \
#     -e DISTGATE_ALLOW_SOURCES=198.51.100.7/32 -e DISTGATE_ALLOW_NAMES='rem-*-myapp@*,rpc-*-myapp@*' \
#     -e DISTGATE_METRICS_LISTEN=127.0.0.1:9568 distgate

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
# VCS stamping happens when .git is in the build context (see
# docs/OPERATIONS.md, "Version"); otherwise `distgate version` says (devel).
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/distgate ./cmd/distgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/distgate /distgate
USER nonroot:nonroot
# 9100: the distribution port in the examples; 9568: /metrics and /healthz
# when DISTGATE_METRICS_LISTEN is set.
EXPOSE 9100 9568
# SIGTERM drains (drain_timeout, 10s by default): give `docker stop -t` and
# terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/distgate"]
CMD ["run"]
