#!/usr/bin/env bash
# Checks the alerting rules, their unit tests, the example Alertmanager configuration and the Grafana
# dashboards.
#
#   alerts/check.sh          (from anywhere; it works from the repository root)
#
# Needs promtool and amtool on PATH (Debian/Ubuntu: apt-get install -y prometheus prometheus-alertmanager)
# and python3 (standard library only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in promtool amtool python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check.sh: $tool not found on PATH (apt-get install -y prometheus prometheus-alertmanager python3)" >&2
    exit 2
  fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Runs every check, even after a failure, and exits non-zero at the end if any failed.
failed=()
step() {
  local title="$1"
  shift
  echo "== $title"
  if ! "$@"; then
    failed+=("$title")
  fi
}

step "promtool check rules" promtool check rules alerts/*.rules.yml
step "promtool test rules" promtool test rules alerts/tests/*.yml
step "amtool check-config" amtool check-config alerts/alertmanager.yml

# Rule conventions (severity, annotations, runbook_url), unit-test coverage of every alert, metric
# names, and the dashboards. Writes $tmp/dashboard_queries.rules.yml: every dashboard query as a
# recording rule, so that promtool parses each PromQL expression in the next step.
check_conventions() {
  python3 - "$tmp/dashboard_queries.rules.yml" <<'PY'
import glob
import json
import re
import sys

out_rules = sys.argv[1]
errors = []

RUNBOOK = "https://github.com/whatsapp-exporter/whatsapp_exporter/blob/main/docs/runbooks.md#"
SEVERITIES = {"critical", "warning", "info"}
DS_REF = {"type": "prometheus", "uid": "${datasource}"}

# Every metric the exporter exposes (SPEC.md), plus the ones dashboards take from elsewhere.
HISTOGRAMS = {
    "whatsapp_greenapi_notification_delay_seconds",
    "whatsapp_webhook_lag_seconds", "whatsapp_message_delivery_seconds",
    "whatsapp_canary_accept_seconds", "whatsapp_canary_delivered_seconds",
    "whatsapp_canary_arrival_seconds",
    "whatsapp_plugchat_attendance_duration_seconds",
    "whatsapp_plugchat_attendance_wait_seconds",
}
METRICS = HISTOGRAMS | {
    "whatsapp_up", "whatsapp_connected", "whatsapp_connected_changes_total",
    "whatsapp_poll_duration_seconds", "whatsapp_last_success_timestamp_seconds",
    "whatsapp_polls_total", "whatsapp_poll_failures_total", "whatsapp_last_poll_error_info",
    "whatsapp_next_poll_timestamp_seconds", "whatsapp_retry_after_timestamp_seconds",
    "whatsapp_session_active", "whatsapp_phone_connected", "whatsapp_status_error",
    "whatsapp_waba_socket_state", "whatsapp_waba_gateway_status", "whatsapp_waba_free_space_bytes",
    "whatsapp_waba_build_expiry_timestamp_seconds", "whatsapp_waba_build_info",
    "whatsapp_waba_node_info", "whatsapp_waba_shards", "whatsapp_waba_token_expiry_timestamp_seconds",
    "whatsapp_greenapi_state",
    "whatsapp_cloudapi_quality_rating", "whatsapp_cloudapi_can_send_message",
    "whatsapp_cloudapi_messaging_limit", "whatsapp_cloudapi_health_error",
    "whatsapp_cloudapi_throughput_level",
    "whatsapp_evolution_state", "whatsapp_waha_status",
    "whatsapp_discovered_instances", "whatsapp_discovery_overflow_total",
    "whatsapp_discovery_skipped_instances",
    "whatsapp_plugchat_attendances_open",
    "whatsapp_plugchat_delivery_errors_total", "whatsapp_plugchat_last_disconnect_timestamp_seconds",
    "whatsapp_webhook_events_total", "whatsapp_webhook_rejected_total",
    "whatsapp_webhook_last_event_timestamp_seconds", "whatsapp_message_status_total",
    "whatsapp_messages_received_total", "whatsapp_message_errors_total",
    "whatsapp_message_tracking_evictions_total", "whatsapp_cloudapi_quality_events_total",
    "whatsapp_cloudapi_account_events_total", "whatsapp_cloudapi_template_events_total",
    "whatsapp_canary_runs_total", "whatsapp_canary_last_success_timestamp_seconds",
    "whatsapp_canary_cleanup_failures_total",
    "whatsapp_number_state", "whatsapp_number_problem", "whatsapp_number_state_changes_total",
    "whatsapp_messages_unacknowledged",
    "whatsapp_exporter_build_info", "whatsapp_exporter_config_last_reload_successful",
    "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
    "process_resident_memory_bytes", "process_cpu_seconds_total", "up",
}
METRIC_RE = re.compile(r"(?<![\w\"$])((?:whatsapp|process)_[a-z0-9_]+|up)(?=\s*[{\[)]|\s*$|\s+(?:and|or|unless|==|!=|<|>|[-+*/]))")


def check_metric_names(where, expr):
    for name in METRIC_RE.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in METRICS and not (base in HISTOGRAMS and base != name):
            errors.append(f"{where}: unknown metric {name!r}")


# ---------------------------------------------------------------- alerting rules
alerts = {}
for path in sorted(glob.glob("alerts/*.rules.yml")):
    text = open(path).read()
    blocks = re.split(r"\n(?=\s*- (?:alert|record):)", text)
    for block in blocks:
        m = re.match(r"\s*- alert:\s*(\S+)", block)
        if not m:
            continue
        name = m.group(1)
        alerts.setdefault(name, path)
        sev = re.search(r"\n\s+severity:\s*(\S+)", block)
        if not sev or sev.group(1) not in SEVERITIES:
            errors.append(f"{path}: {name}: severity must be one of {sorted(SEVERITIES)}")
        for ann in ("summary", "description", "runbook_url"):
            if not re.search(rf"\n\s+{ann}:", block):
                errors.append(f"{path}: {name}: annotation {ann} missing")
        rb = re.search(r"\n\s+runbook_url:\s*(\S+)", block)
        if rb and rb.group(1) != RUNBOOK + name.lower():
            errors.append(f"{path}: {name}: runbook_url must be {RUNBOOK + name.lower()}")
        expr = re.search(r"\n\s+expr:\s*(\|\n(?:\s{10,}.*\n?)+|.*)", block)
        if expr:
            check_metric_names(f"{path}: {name}", expr.group(1).lstrip("|"))
if not alerts:
    errors.append("no alerting rules found in alerts/*.rules.yml")

# ---------------------------------------------------------------- unit test coverage
firing, quiet = set(), set()
for path in sorted(glob.glob("alerts/tests/*.yml")):
    lines = [l.strip() for l in open(path) if l.strip() and not l.strip().startswith("#")]
    for i, line in enumerate(lines):
        m = re.match(r"alertname:\s*(\S+)", line)
        if not m or i + 1 >= len(lines):
            continue
        nxt = lines[i + 1]
        if nxt == "exp_alerts: []":
            quiet.add(m.group(1))
        elif nxt == "exp_alerts:" and i + 2 < len(lines) and lines[i + 2].startswith("- exp_labels:"):
            firing.add(m.group(1))
for name in sorted(alerts):
    if name not in firing:
        errors.append(f"alerts/tests: {name} has no test where it fires")
    if name not in quiet:
        errors.append(f"alerts/tests: {name} has no test where it does not fire")

# ---------------------------------------------------------------- dashboards
VAR_VALUES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def substitute(expr):
    def repl(m):
        name = m.group(1) or m.group(2)
        return VAR_VALUES.get(name, ".*")
    # $name or ${name}; "$1" in label_replace is not a variable
    return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", repl, expr)


def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for sub in p.get("panels", []):
            yield sub


SELECTOR_RE = re.compile(r'(?<![\w"$:.])((?:whatsapp|process)_[a-z0-9_]+)(\{[^}]*\})?')


def job_instance(where, expr):
    """Every metric selector filters on the job and instance variables (HA pairs, several exporters)."""
    for m in SELECTOR_RE.finditer(expr):
        sel = m.group(2) or ""
        if 'job=~"$job"' not in sel or 'instance=~"$instance"' not in sel:
            errors.append(f"{where}: {m.group(0)} does not filter on job=~\"$job\" and instance=~\"$instance\"")


def md_anchors(path):
    out = set()
    for line in open(path):
        if line.startswith("#"):
            a = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            out.add(a)
    return out


RUNBOOK_ANCHORS = md_anchors("docs/runbooks.md")
for name in sorted(alerts):
    if name.lower() not in RUNBOOK_ANCHORS:
        errors.append(f"docs/runbooks.md: no heading for the alert {name}")

queries = []
dash_files = sorted(glob.glob("dashboards/*.json"))
if not dash_files:
    errors.append("no dashboards/*.json")
uids = {}
for path in dash_files:
    try:
        dash = json.load(open(path))
    except ValueError as e:
        errors.append(f"{path}: invalid JSON: {e}")
        continue
    for key in ("uid", "title", "panels", "templating"):
        if key not in dash:
            errors.append(f"{path}: no {key}")
    if dash.get("uid") in uids:
        errors.append(f"{path}: uid {dash.get('uid')} also used by {uids[dash.get('uid')]}")
    uids[dash.get("uid")] = path
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 39:
        errors.append(f"{path}: schemaVersion must be >= 39")
    if "__inputs" in dash or "__requires" in dash:
        errors.append(f"{path}: exported-for-sharing fields (__inputs/__requires) are not wanted")

    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append(f"{path}: needs a variable 'datasource' of type datasource, query prometheus")
    for name in ("job", "instance", "gateway", "provider"):
        v = variables.get(name)
        if not v or v.get("type") != "query":
            errors.append(f"{path}: needs a query variable {name!r}")
        elif not (v.get("multi") and v.get("includeAll")):
            errors.append(f"{path}: variable {name!r} must be multi-value with 'All'")
    # A variable whose query fixes a label to a literal regex (provider=~"plugzapi|zapi") must not let
    # its "All" value widen it: All is that regex (or the list of values), never ".*".
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.search(rf'\b{re.escape(name)}=~?"([^"$]+)"', q)
        if m and v.get("allValue") not in (None, "", m.group(1)):
            errors.append(f"{path}: variable {name!r}: All is {v.get('allValue')!r}, which overrides "
                          f"the filter {name}=~{m.group(1)!r} of its query")
    sp = variables.get("status_page")
    if not sp or sp.get("type") not in ("textbox", "constant") or not str(sp.get("query", "")).startswith("http"):
        errors.append(f"{path}: needs a textbox variable 'status_page' with the exporter's status page URL")

    # Every datasource reference anywhere is the variable; no other datasource uid.
    for where, node in walk(dash):
        if "datasource" in node and node is not ds:
            ref = node["datasource"]
            if ref != DS_REF and ref != "${datasource}":
                errors.append(f"{path}{where}: datasource must be {DS_REF}, not {ref!r}")
    for where, node in walk(dash):
        if "uid" in node and where != "" and node.get("uid") != "${datasource}":
            errors.append(f"{path}{where}: uid {node.get('uid')!r} is not the ${{datasource}} variable")

    ids = set()
    for p in panels_of(dash):
        title = f"{path}: panel {p.get('title')!r}"
        if p.get("id") in ids:
            errors.append(f"{title}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            errors.append(f"{title}: no gridPos")
        if p.get("datasource") != DS_REF:
            errors.append(f"{title}: panel datasource must be {DS_REF}")
        if p.get("type") != "row" and not p.get("targets"):
            errors.append(f"{title}: no targets")
        for t in p.get("targets", []):
            if t.get("datasource") != DS_REF:
                errors.append(f"{title} target {t.get('refId')}: datasource must be {DS_REF}")
            if not t.get("expr", "").strip():
                errors.append(f"{title} target {t.get('refId')}: empty expr")
                continue
            queries.append((f"{title} target {t.get('refId')}", t["expr"]))
            job_instance(f"{title} target {t.get('refId')}", t["expr"])
        # Each row's panels link to the runbook of what the row shows and to the status page.
        if p.get("type") != "row":
            urls = [l.get("url", "") for l in p.get("links", [])]
            books = [u for u in urls if u.startswith(RUNBOOK)]
            if not books:
                errors.append(f"{title}: no link to a runbook ({RUNBOOK}<anchor>)")
            for u in books:
                if u[len(RUNBOOK):] not in RUNBOOK_ANCHORS:
                    errors.append(f"{title}: link {u}: no such heading in docs/runbooks.md")
            if "${status_page:raw}" not in urls:
                errors.append(f"{title}: no link to the exporter's status page (${{status_page:raw}})")
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            queries.append((f"{path}: annotation {a.get('name')!r}", a["expr"]))
            job_instance(f"{path}: annotation {a.get('name')!r}", a["expr"])
            # Marks every change whatever the scrape interval: the latest value against the latest
            # value one step earlier, not changes() over a window that may hold a single sample.
            if "offset $__interval" not in a["expr"]:
                errors.append(f"{path}: annotation {a.get('name')!r}: compare with `offset $__interval`")
    conn = [a for a in dash.get("annotations", {}).get("list", []) if a.get("name") == "Connection changes"]
    for a in conn:
        if "whatsapp_connected_changes_total" not in a.get("expr", ""):
            errors.append(f"{path}: annotation 'Connection changes' must count whatsapp_connected_changes_total")
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q, re.S)
        if not m:
            errors.append(f"{path}: variable {name!r}: expected label_values(selector, label), got {q!r}")
            continue
        queries.append((f"{path}: variable {name!r}", m.group(1)))

with open(out_rules, "w") as f:
    f.write("groups:\n  - name: dashboard_queries\n    rules:\n")
    for i, (where, expr) in enumerate(queries):
        check_metric_names(where, expr)
        f.write(f"      # {where}\n      - record: dashboard_query_{i}\n        expr: {json.dumps(substitute(expr))}\n")

print(f"{len(alerts)} alerts: each fires and stays quiet in a unit test; "
      f"{len(dash_files)} dashboards with {len(queries)} queries")
if errors:
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    sys.exit(1)
PY
}
step "rule conventions, test coverage, dashboards" check_conventions
if [[ -s "$tmp/dashboard_queries.rules.yml" ]]; then
  step "dashboard PromQL (promtool check rules on every dashboard query)" \
    promtool check rules "$tmp/dashboard_queries.rules.yml"
fi

if ((${#failed[@]})); then
  printf 'check.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "check.sh: all checks passed"
