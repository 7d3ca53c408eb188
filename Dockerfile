# syntax=docker/dockerfile:1
#
# The mesh's two images and the Online Boutique's, from one multi-stage build
# (`cargo xtask images` builds all three):
#
#   docker build --target mesh-control -t ghcr.io/mesh-dev/mesh-control:0.1.0 .
#   docker build --target mesh-proxy   -t ghcr.io/mesh-dev/mesh-proxy:0.1.0 .
#   docker build --target boutique     -t ghcr.io/mesh-dev/boutique:0.1.0 .
#
# - mesh-control: distroless (glibc, CA certificates, no shell), uid 65532 (nonroot).
# - mesh-proxy: Debian slim with iptables (nft and legacy), which `mesh-proxy init` runs in
#   the pod's init container (as root with NET_ADMIN/NET_RAW only; the injector sets
#   that); the proxy itself runs as uid/gid 1337, which the capture rules exclude.
# - boutique: the Online Boutique's services in Rust (`boutique <service>`, listening on
#   $PORT), distroless like mesh-control, uid/gid 1000 as upstream's manifests run them;
#   examples/online-boutique/kubernetes-manifests-rust.yaml deploys it.
# Every entrypoint is the binary: Kubernetes manifests set only `args`.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS build
WORKDIR /src
# The whole workspace (Cargo needs every member's manifest); the cache mounts keep the
# registry and the target directory between builds, so an edit rebuilds only what changed.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY mesh-api mesh-api
COPY mesh-proxy mesh-proxy
COPY mesh-control mesh-control
COPY meshctl meshctl
COPY mesh-testbed mesh-testbed
COPY xtask xtask
COPY examples/online-boutique examples/online-boutique
COPY deploy deploy
# Debug info stripped (symbols kept, so panics still name functions): mesh-proxy is 19 MB
# instead of 121 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mesh-proxy -p mesh-control -p online-boutique \
    && mkdir -p /out \
    && cp target/release/mesh-proxy target/release/mesh-control target/release/boutique /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS mesh-control
COPY --from=build /out/mesh-control /usr/local/bin/mesh-control
USER 65532:65532
EXPOSE 15012 15014 15017
ENTRYPOINT ["/usr/local/bin/mesh-control"]

FROM debian:${DEBIAN}-slim AS mesh-proxy
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/mesh-proxy /usr/local/bin/mesh-proxy
USER 1337:1337
EXPOSE 15001 15006 15008 15020 15021
ENTRYPOINT ["/usr/local/bin/mesh-proxy"]

FROM gcr.io/distroless/cc-debian12:nonroot AS boutique
COPY --from=build /out/boutique /usr/local/bin/boutique
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/boutique"]
