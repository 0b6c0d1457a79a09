#!/usr/bin/env bash
# The golden /metrics file (kept up to date by `cargo test --test golden`) must satisfy promtool.
set -euo pipefail
promtool check metrics < tests/golden/metrics.txt
echo "golden metrics: promtool check metrics ok"
