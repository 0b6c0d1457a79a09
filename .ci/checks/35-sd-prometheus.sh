#!/usr/bin/env bash
# Targets Prometheus discovers: a real Prometheus (Debian's package, as 30-e2e-prometheus.sh) runs
# deploy/prometheus/probe-sd.yml against three release exporters with --shard i/3 on 127.0.0.1;
# every gateway and discovered instance must be found through /sd, probed up on its owner, and
# stored once (about 20 seconds).
set -euo pipefail
timeout 200 python3 tests/e2e/sd_prometheus_e2e.py target/release/whatsapp_exporter
