#!/usr/bin/env bash
# End to end: the release binary (a mock gateway, and --demo) scraped by a real Prometheus with the
# project's rules; dashboard queries evaluated; an injected outage must fire its alert.
set -euo pipefail
python3 tests/e2e/prometheus_e2e.py target/release/whatsapp_exporter
