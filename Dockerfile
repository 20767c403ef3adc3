# syntax=docker/dockerfile:1
#
# wsgate container images.
#
#   docker build -t wsgate .                      # default target: static binary, distroless/static, non-root
#   docker build --target plugins -t wsgate:plugins \
#     --build-arg PLUGINS="acme=./examples/acme/plugin" .
#
# The default image holds one static binary (CGO_ENABLED=0) and the
# sample config at /etc/wsgate/wsgate.yaml with its listeners opened to the
# container network (websocket 8080, metrics 9090). The Helm chart
# (charts/wsgate) mounts its own config over /etc/wsgate.
#
# Plugins: Go plugins (`plugins:` in the config) need cgo on both sides, and
# Go loads a plugin only into a gateway built by the same toolchain with the
# same build flags from the same module versions. A static CGO_ENABLED=0
# binary cannot load any plugin, and a plugin built elsewhere will not match
# this image's gateway. So a plugin image builds the gateway and its plugins
# together, in one glibc-based stage, and runs them on a glibc runtime: the
# `plugins` target below. PLUGINS lists name=package pairs built from this
# source tree (a plugin in another module must pin this wsgate version and
# be added to the tree, e.g. with COPY, before the build); each lands in
# /plugins/<name>.so, to list under `plugins:` in the config.

ARG GO_VERSION=1.26

# ---- static build -----------------------------------------------------------
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
# The commit (make image passes it): .git is not in the build context.
ARG REVISION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/wsgate/wsgate/gateway.Version=${VERSION} -X github.com/wsgate/wsgate/gateway.Revision=${REVISION}" \
      -o /out/wsgate ./cmd/wsgate
# The sample config with container listeners; config check keeps it valid.
RUN mkdir -p /out/etc && \
    sed -e 's/^listen: "127\.0\.0\.1:8080"/listen: "0.0.0.0:8080"/' \
        -e 's/^  listen: "127\.0\.0\.1:9090"/  listen: "0.0.0.0:9090"/' \
        gateway/config/default.yaml > /out/etc/wsgate.yaml && \
    grep -q '^listen: "0.0.0.0:8080"' /out/etc/wsgate.yaml && \
    grep -q '^  listen: "0.0.0.0:9090"' /out/etc/wsgate.yaml && \
    /out/wsgate config check --config /out/etc/wsgate.yaml

# ---- default image: static, distroless, non-root ----------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS static
COPY --from=build /out/wsgate /wsgate
COPY --from=build /out/etc/wsgate.yaml /etc/wsgate/wsgate.yaml
# 65532 is distroless' nonroot user. With PHP's files session store run the
# container as PHP's user instead (docker run --user 33:33, or the chart's
# securityContext), as PHP writes session files with mode 0600.
USER 65532:65532
# websocket, metrics (/metrics, /healthz, /readyz), push API (when api.listen is set)
EXPOSE 8080 9090 9091
ENTRYPOINT ["/wsgate"]
CMD ["serve", "--config", "/etc/wsgate/wsgate.yaml"]

# ---- plugins: gateway and plugins built together with cgo --------------------
FROM golang:${GO_VERSION}-bookworm AS build-plugins
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=
# name=package pairs, space separated.
ARG PLUGINS="acme=./examples/acme/plugin"
# The same flags for the gateway and every plugin (no -s -w: keep the
# binaries as the plugin loader expects them).
ARG BUILDFLAGS="-trimpath"
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    export CGO_ENABLED=1; \
    go build ${BUILDFLAGS} -ldflags "-X github.com/wsgate/wsgate/gateway.Version=${VERSION} -X github.com/wsgate/wsgate/gateway.Revision=${REVISION}" \
      -o /out/wsgate ./cmd/wsgate; \
    mkdir -p /out/plugins; \
    for p in ${PLUGINS}; do \
      name="${p%%=*}"; pkg="${p#*=}"; \
      go build ${BUILDFLAGS} -buildmode=plugin -o "/out/plugins/${name}.so" "${pkg}"; \
    done
RUN mkdir -p /out/etc && \
    sed -e 's/^listen: "127\.0\.0\.1:8080"/listen: "0.0.0.0:8080"/' \
        -e 's/^  listen: "127\.0\.0\.1:9090"/  listen: "0.0.0.0:9090"/' \
        gateway/config/default.yaml > /out/etc/wsgate.yaml && \
    /out/wsgate config check --config /out/etc/wsgate.yaml

# glibc runtime (Debian 12, as the builder) for the cgo gateway and plugins.
FROM gcr.io/distroless/base-debian12:nonroot AS plugins
COPY --from=build-plugins /out/wsgate /wsgate
COPY --from=build-plugins /out/plugins/ /plugins/
COPY --from=build-plugins /out/etc/wsgate.yaml /etc/wsgate/wsgate.yaml
USER 65532:65532
EXPOSE 8080 9090 9091
ENTRYPOINT ["/wsgate"]
CMD ["serve", "--config", "/etc/wsgate/wsgate.yaml"]

# The last stage is what a plain `docker build` produces: the static image.
FROM static
