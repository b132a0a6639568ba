# syntax=docker/dockerfile:1
# Build: docker build -t sluice .
# Run:   docker run --stop-timeout 35 -p 8080:8080 -v $PWD/config/sluice.toml:/etc/sluice/sluice.toml sluice
# (--stop-timeout: Docker's default 10 s is shorter than shutdown_grace, 30 s.)
# (In a container, set [admin] bind = "0.0.0.0:9901" to reach the admin
# listener from outside, and publish it only on a private interface.)

FROM rust:1-slim-bookworm AS build
# jemalloc (tikv-jemalloc-sys) builds with make.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/sluice

FROM debian:bookworm-slim
# ca-certificates: the system roots, which ACME verifies its directory
# against when acme.ca is empty. /var/lib/sluice/acme: ACME's state_dir default.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sluice \
 && mkdir -p /etc/sluice /var/lib/sluice/acme \
 && chown -R sluice:sluice /var/lib/sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY config/sluice.toml /etc/sluice/sluice.toml
# The example's self-signed certificate; relative certificate paths in the
# config resolve against the working directory.
COPY config/certs /etc/sluice/config/certs
# The example's basic-auth users (route "ops" of the example config).
COPY config/htpasswd /etc/sluice/config/htpasswd
WORKDIR /etc/sluice
USER sluice
EXPOSE 8080 8443 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--config", "/etc/sluice/sluice.toml"]
