#!/usr/bin/env bash
# Pushes that find their replica: `webhooks-routes --format nginx` for 3 replicas of a 1,000-gateway
# configuration, a real nginx (Debian nginx-light, installed if missing) in front of three release
# exporters started with --shard i/3, all on 127.0.0.1; one sent and one delivered callback per
# gateway through nginx must each be measured on the gateway's owner, and so must the statuses of a
# Meta app's nine Cloud API numbers, posted on the app's one path (mirrored) (about 20 seconds).
set -euo pipefail
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt-get install -y -q nginx-light >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }
fi
timeout 300 python3 tests/e2e/webhook_routes_e2e.py target/release/whatsapp_exporter 1000
# The shipped examples are what the command prints for their configuration.
for format in nginx kubernetes; do
  ext=$([ "$format" = nginx ] && echo conf || echo yaml)
  target/release/whatsapp_exporter webhooks-routes --config.file deploy/webhook-routes/whatsapp_exporter.yml \
    --shards 3 --upstream 'http://exporter-{shard}.exporter:10070' --format "$format" |
    diff -u "deploy/webhook-routes/$format.$ext" - || { echo "deploy/webhook-routes/$format.$ext is stale: regenerate it (see its configuration's header)" >&2; exit 1; }
done
echo "deploy/webhook-routes: nginx.conf and kubernetes.yaml up to date"
