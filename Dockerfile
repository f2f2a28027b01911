# Build stage: a release binary from the locked dependency set.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The query page's files, compiled into the binary (src/api/ui.rs).
COPY assets ./assets
RUN cargo build --release --locked && strip target/release/janus

# Runtime stage: Debian slim (glibc, CA certificates for TLS upstreams), non-root.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --home-dir /var/lib/janus --create-home janus
COPY --from=build /src/target/release/janus /usr/local/bin/janus
USER janus
WORKDIR /var/lib/janus
VOLUME ["/var/lib/janus/data"]
EXPOSE 9099
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9099/-/healthy || exit 1
ENTRYPOINT ["/usr/local/bin/janus"]
CMD ["--web.listen-address=0.0.0.0:9099", "--storage.path=/var/lib/janus/data"]
