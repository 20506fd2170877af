# Build: docker build -t postback-relay .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY schemas ./schemas
RUN cargo build --release --locked --bin postback-relay

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 relay \
    && mkdir -p /var/lib/postback-relay && chown relay /var/lib/postback-relay
COPY --from=build /src/target/release/postback-relay /usr/local/bin/postback-relay
COPY config/example.toml /etc/postback-relay/example.toml
USER relay
# /metrics, /healthz, /readyz
EXPOSE 9464
ENTRYPOINT ["postback-relay"]
CMD ["run", "--config", "/etc/postback-relay/relay.toml"]
