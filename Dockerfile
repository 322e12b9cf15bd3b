# syntax=docker/dockerfile:1
# numberd: a static binary on a distroless base, run as a non-root user.
#
#   docker build -t numberd .
#   docker run -p 8080:8080 -v numberd-data:/data -e NUMBERD_ADMIN_TOKEN=… numberd
#
# The image listens on all interfaces, so numberd refuses to start without a token
# (NUMBERD_ADMIN_TOKEN, or a --config file mounted into the container).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
# CGO_ENABLED=0: the SQLite driver is pure Go, so the binary needs no libc.
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/numberd ./cmd/numberd \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/numberd /usr/local/bin/numberd
# The embedded store lives in a volume owned by the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
ENV NUMBERD_ADDR=0.0.0.0:8080 \
    NUMBERD_DATA_DIR=/data \
    NUMBERD_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/numberd"]
CMD ["serve"]
