#!/usr/bin/env bash
# A short soak: 100 gateways at 1 s (some failing), /metrics scraped non-stop, reloads every 10 s;
# no error and a flat RSS. The figures in docs/reliability.md come from the same script run for 180 s.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
SOAK_SECONDS=${SOAK_SECONDS:-60} python3 benches/soak.py target/release/whatsapp_exporter
