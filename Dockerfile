# Build: docker build -t postback-relay .
# Lint:  hadolint Dockerfile (configured by .hadolint.yaml)
FROM rust:1-bookworm AS build
WORKDIR /src
# The dependencies first, in a layer of their own: it is built again only when a manifest or
# the lock file changes, not on every change to the relay's code. The crates' sources are
# stand-ins here (the workspace's bench crate only needs to exist).
COPY Cargo.toml Cargo.lock ./
COPY bench/Cargo.toml bench/
RUN mkdir -p src bench/src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > bench/src/main.rs \
    && cargo build --release --locked --bin postback-relay \
    && rm -rf src
# Then the relay itself, with the presets it builds in; `touch` makes cargo see the real
# sources as newer than the stand-ins.
COPY presets ./presets
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin postback-relay

FROM debian:bookworm-slim
# ca-certificates follows the base image's point release (unpinned on purpose: see
# .hadolint.yaml).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home relay \
    && mkdir -p /var/lib/postback-relay \
    && chown 10001:10001 /var/lib/postback-relay
COPY --from=build /src/target/release/postback-relay /usr/local/bin/postback-relay
COPY config/example.toml /etc/postback-relay/example.toml
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The allocator gives freed memory back to the system after 10 ms instead of its default of
# 10 s for its arenas: a drain's peak memory is 4 to 10 MB lower (docs/BENCHMARKS.md).
ENV MIMALLOC_PURGE_DELAY=10
WORKDIR /var/lib/postback-relay
# /metrics, /healthz, /readyz
EXPOSE 9464
ENTRYPOINT ["postback-relay"]
CMD ["run", "--config", "/etc/postback-relay/relay.toml"]
