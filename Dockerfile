# syntax=docker/dockerfile:1
# meetgate container image: the release binary on a distroless Debian 12
# base (glibc, libgcc, CA certificates; no shell, no package manager), run as
# the numeric non-root user 65532.
#
#   docker build -t meetgate:0.1.0 .
#   docker run --rm -p 8443:8443 -v "$PWD/conf:/etc/meetgate/config:ro" \
#     meetgate:0.1.0 run --config /etc/meetgate/config/meetgate.toml
#
# No HEALTHCHECK: orchestrators probe the admin listener (/readyz, /healthz;
# deploy/kubernetes/deployment.yaml). deploy/test-manifests.sh checks this
# file with Docker's own parser and compiles the build context it copies.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# What `cargo build` reads: the manifest and lock file, the sources, the
# demo configuration (compiled in) and the benches the manifest declares.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config/demo.toml.in ./config/demo.toml.in
COPY benches/*.rs ./benches/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin meetgate \
    && install -D -m 0755 target/release/meetgate /out/meetgate

# Debian 12, the same glibc as the builder; :nonroot is user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/meetgate /usr/bin/meetgate
USER 65532:65532
# 8443: TLS listener, 9901: admin listener (as deploy/kubernetes configures them)
EXPOSE 8443 9901
# SIGTERM drains ([server] drain_ms, then shutdown_grace_ms).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/meetgate"]
CMD ["run", "--config", "/etc/meetgate/config/meetgate.toml"]
