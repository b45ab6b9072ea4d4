# syntax=docker/dockerfile:1
# Steward in a small image: one static-ish binary on Debian slim, run as uid
# 1001, data in /var/lib/steward. Build: docker build -t steward .
# Linted in CI with hadolint (scripts/check-deploy); not built there, as no
# Docker engine runs where Steward is tested: see docs/operations.md.

FROM rust:1.95-slim-trixie AS build
# Debian's security updates replace package versions, so pinned versions
# would stop building; the base image's tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
# Linked by Rust's own linker, not mold: it lays start-up's functions out
# together (crates/steward/build.rs), which keeps an idle server's memory low.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p steward \
 && cp target/release/steward /usr/local/bin/steward

FROM debian:trixie-slim
# ca-certificates: TLS to model providers and channel APIs.
# postgresql-client: pg_dump and pg_restore for `steward backup` (Debian 13
# ships version 17, which backs up PostgreSQL 16 and 17 servers).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1001 --user-group --no-create-home --home-dir /var/lib/steward --shell /usr/sbin/nologin steward \
 && install -d -o 1001 -g 1001 -m 0700 /var/lib/steward
COPY --from=build /usr/local/bin/steward /usr/local/bin/steward
USER 1001:1001
ENV STEWARD_DATA_DIR=/var/lib/steward \
    STEWARD_LISTEN=0.0.0.0:8080 \
    STEWARD_LOG__FORMAT=json
VOLUME ["/var/lib/steward"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["steward", "healthcheck"]
ENTRYPOINT ["steward"]
CMD ["serve"]
