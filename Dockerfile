# One image for every role of onlinebank: the role is the command.
#   docker build -t onlinebank .                      full build (what the release pipeline runs)
#   docker run onlinebank serve request ...           one role
#   docker run -p 8080:8080 onlinebank up --bind 0.0.0.0   the whole bank (embedded default)
#
# Stages: `builder` compiles (dependencies in a layer of their own, cached until Cargo.lock or a
# manifest changes), `runtime-base` is the small runtime (from scratch plus the few files of
# Debian slim that the binary needs: libc, libm, libgcc_s), `runtime` (the default, last) takes the
# binary from `builder`, and
# `prebuilt` takes a binary built outside Docker from the build context (`--target prebuilt`, with
# the stripped binary at ./onlinebank): how .ci/run builds the image here, where no registry
# serves the Rust image.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first: a layer that changes only with Cargo.lock or a manifest. Each crate gets an
# empty target so `cargo build` compiles just the dependencies.
COPY Cargo.toml Cargo.lock ./
COPY crates/onlinebank/Cargo.toml crates/onlinebank/Cargo.toml
COPY crates/onlinebank-core/Cargo.toml crates/onlinebank-core/Cargo.toml
COPY crates/onlinebank-bus/Cargo.toml crates/onlinebank-bus/Cargo.toml
COPY crates/onlinebank-gateway/Cargo.toml crates/onlinebank-gateway/Cargo.toml
COPY crates/onlinebank-request/Cargo.toml crates/onlinebank-request/Cargo.toml
COPY crates/onlinebank-auth/Cargo.toml crates/onlinebank-auth/Cargo.toml
COPY crates/onlinebank-account/Cargo.toml crates/onlinebank-account/Cargo.toml
COPY crates/onlinebank-history/Cargo.toml crates/onlinebank-history/Cargo.toml
COPY crates/onlinebank-mypage/Cargo.toml crates/onlinebank-mypage/Cargo.toml
COPY crates/onlinebank-client/Cargo.toml crates/onlinebank-client/Cargo.toml
RUN for crate in crates/*/; do mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; done \
    && echo 'fn main() {}' > crates/onlinebank/src/main.rs \
    && cargo build --release --locked \
    && rm -rf crates/*/src target/release/.fingerprint/onlinebank*
COPY crates crates
RUN cargo build --release --locked --bin onlinebank \
    && strip target/release/onlinebank \
    && cp target/release/onlinebank /usr/local/bin/onlinebank

# The runtime holds only what the binary loads (the dynamic loader, libc, libm, libgcc_s), the CA
# bundle (TLS to a managed Kafka with a public CA; OpenSSL is linked into the binary), a passwd
# entry for its user and the data directory: the idea of distroless/cc, made from Debian's own
# files. No shell, no package manager.
FROM debian:bookworm-slim AS runtime-files
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The CA bundle is the newest Debian has (an old pin would keep revoked roots); dev/image.sh's
# base already holds it, so the build here needs no network.
# hadolint ignore=DL3008
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update && apt-get install -y --no-install-recommends ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN root=/rootfs \
    && mkdir -p "$root/etc/ssl/certs" "$root/data" "$root/tmp" "$root/usr/local/bin" \
    && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" \
    && for path in /lib/*-linux-gnu/libc.so.6 /lib/*-linux-gnu/libm.so.6 \
                   /lib/*-linux-gnu/libgcc_s.so.1 /lib64/ld-linux-*.so.2; do \
           mkdir -p "$root$(dirname "$path")" && cp -L "$path" "$root$path"; \
       done \
    && echo 'onlinebank:x:10001:10001:onlinebank:/data:/nonexistent' > "$root/etc/passwd" \
    && echo 'onlinebank:x:10001:' > "$root/etc/group" \
    && echo 'hosts: files dns' > "$root/etc/nsswitch.conf" \
    && chown 10001:10001 "$root/data" && chmod 0700 "$root/data" && chmod 1777 "$root/tmp"

FROM scratch AS runtime-base
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="onlinebank" \
      org.opencontainers.image.description="An online bank backend, event-driven, in one executable" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=runtime-files /rootfs/ /
# Data (SQLite files, the embedded log) under /data, a volume; the user is fixed and non-root.
ENV ONLINEBANK_DATA_DIR=/data \
    ONLINEBANK_LISTEN=0.0.0.0:8080 \
    ONLINEBANK_ADMIN_LISTEN=0.0.0.0:9090 \
    RUST_LOG=info \
    NO_COLOR=1
VOLUME ["/data"]
EXPOSE 8080 9090
USER 10001:10001
WORKDIR /data
# For runtimes without Kubernetes probes: the readiness of the admin listener
# (ONLINEBANK_ADMIN_LISTEN; every role in the process ready), asked by the binary itself (the
# image has no curl).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["onlinebank", "probe"]
ENTRYPOINT ["onlinebank"]
CMD ["up", "--bind", "0.0.0.0"]

FROM runtime-base AS prebuilt
COPY onlinebank /usr/local/bin/onlinebank

FROM runtime-base AS runtime
COPY --from=builder /usr/local/bin/onlinebank /usr/local/bin/onlinebank
