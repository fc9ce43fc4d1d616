# The locallife image: one static-ish binary on a small Debian base, run as non-root.
#
# From public bases (compiles inside the build stage, with a cargo cache mount):
#   podman build -t registry.example.com/locallife:0.1.0 .        (or docker build)
# From a binary built on the host (what scripts/image.sh does; no registry needed when
# RUNTIME_IMAGE is a local base):
#   podman build --target image-prebuilt --build-arg RUNTIME_IMAGE=localhost/debian:bookworm .
#
# Base images are build arguments, fully qualified (short names do not resolve under
# podman). The runtime base needs glibc >= 2.36 and nothing else: TLS roots are built
# into the binary.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# ---- build: the release binary, from the lockfile
FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin locallife \
    && mkdir -p /out && objcopy --strip-debug target/release/locallife /out/locallife

# ---- runtime: what every variant shares
FROM ${RUNTIME_IMAGE} AS runtime
# No shell step here, so a base without one (distroless) works too. The numeric user
# needs no passwd entry; Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
ENV LISTEN_ADDR=0.0.0.0:8080 \
    METRICS_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
EXPOSE 8080 9090
ENTRYPOINT ["locallife"]
CMD ["serve"]

# ---- image-prebuilt: a binary the host built, copied to target/image/locallife
FROM runtime AS image-prebuilt
COPY --chmod=0755 target/image/locallife /usr/local/bin/locallife

# ---- fake-wechat: the local stand-in for WeChat's servers (examples/fake_wechat.rs, the
# fake the tests use; any code logs in once as openid dev-<code>), for the development
# stack of compose.yaml only. Never deploy it. Built here (fake-wechat) or from a binary
# the host built, copied to target/image/fake_wechat (fake-wechat-prebuilt).
FROM runtime AS fake-wechat-base
EXPOSE 8099
ENTRYPOINT ["fake_wechat"]
CMD ["0.0.0.0:8099"]

FROM fake-wechat-base AS fake-wechat-prebuilt
COPY --chmod=0755 target/image/fake_wechat /usr/local/bin/fake_wechat

# An example builds with the dev-dependencies: a cargo run of its own, so the service's
# binary above keeps its own feature set.
FROM build AS build-fake-wechat
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --example fake_wechat \
    && objcopy --strip-debug target/release/examples/fake_wechat /out/fake_wechat

FROM fake-wechat-base AS fake-wechat
COPY --from=build-fake-wechat --chmod=0755 /out/fake_wechat /usr/local/bin/fake_wechat

# ---- image (the default, last): the binary of the build stage
FROM runtime AS image
COPY --from=build --chmod=0755 /out/locallife /usr/local/bin/locallife
