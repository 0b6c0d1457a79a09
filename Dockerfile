# syntax=docker/dockerfile:1
#
# Container image of whatsapp_exporter: a glibc binary on distroless, running as uid/gid 65532.
#
#   docker build -t whatsapp_exporter .
#   docker run --rm -p 10070:10070 whatsapp_exporter --demo      # no account needed: http://localhost:10070/
#
# Configuration and secrets are mounted at run time, never baked into the image:
#   - the configuration file at /etc/whatsapp_exporter/whatsapp_exporter.yml (the default CMD below;
#     deploy/whatsapp_exporter.yml is an example to start from);
#   - `token: ${VAR}` secrets as environment variables (docker run --env-file, a Kubernetes Secret
#     through env valueFrom.secretKeyRef, compose `env_file:`), never as command-line flags;
#   - `token_file:` / `password_file:` secrets as read-only files, e.g. under /run/secrets/ (docker/compose
#     secrets, a Kubernetes Secret volume). The process runs as uid 65532: the files must be readable by it.
#
#   docker run -d --name whatsapp_exporter -p 10070:10070 \
#     -v /srv/whatsapp_exporter/whatsapp_exporter.yml:/etc/whatsapp_exporter/whatsapp_exporter.yml:ro \
#     -v /srv/whatsapp_exporter/secrets:/run/secrets/whatsapp_exporter:ro \
#     --env-file /srv/whatsapp_exporter/env \
#     whatsapp_exporter
#
# Reload after editing the mounted file: `docker kill --signal=HUP whatsapp_exporter` or POST /-/reload
# (a file mounted by itself keeps the old content if the editor replaces it: mount its directory instead).
#
# Health: the runtime image has no shell, curl or wget, so there is no HEALTHCHECK instruction here.
# Leave health checks to the orchestrator: GET /-/healthy (liveness) and GET /-/ready (readiness) on
# port 10070, as deploy/kubernetes/deployment.yaml does.
#
# The build and runtime stages are both Debian 12 (bookworm): the binary links the glibc it was built
# against, so move both together. For reproducible deployments pin the images by digest (@sha256:...).

ARG RUST_VERSION=1

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# .git is not in the context: pass the revision for --version and build_info, e.g.
#   docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD) .
ARG REVISION=""
ENV WHATSAPP_EXPORTER_REVISION=${REVISION}
# The build context is what .dockerignore lets in: the manifest, the lock file, build.rs and the Cargo
# targets (src/, benches/, tests/: cargo reads every target the manifest names); no target/, no .git,
# no local configuration or secrets.
COPY . .
# The cache mounts (BuildKit) keep the crates.io downloads and the compiled dependencies between builds.
# The sources are touched so that cargo always rebuilds the crate itself, whatever mtimes the context had.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    find src build.rs -exec touch {} + \
    && cargo build --release --locked \
    && cp target/release/whatsapp_exporter /whatsapp_exporter

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="whatsapp_exporter" \
      org.opencontainers.image.description="Prometheus exporter for WhatsApp gateway APIs (PlugzAPI, Z-API, WhatsApp Business API, Green API, Cloud API) and PlugChat webhooks" \
      org.opencontainers.image.source="https://github.com/whatsapp-exporter/whatsapp_exporter" \
      org.opencontainers.image.licenses="Apache-2.0"
# The gateways' HTTPS APIs are verified against the system CA store (/etc/ssl/certs; SSL_CERT_FILE
# overrides it), which the distroless base image provides.
COPY --from=build /whatsapp_exporter /whatsapp_exporter
# Numeric, so that Kubernetes' runAsNonRoot can verify it (distroless names this user "nonroot").
USER 65532:65532
EXPOSE 10070
ENTRYPOINT ["/whatsapp_exporter"]
CMD ["--config.file=/etc/whatsapp_exporter/whatsapp_exporter.yml"]
