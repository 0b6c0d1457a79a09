#!/usr/bin/env bash
# Alerting rules (promtool check/test), Alertmanager example (amtool), dashboards' JSON and PromQL.
set -euo pipefail
bash alerts/check.sh
