#!/usr/bin/env python3
"""End-to-end test: whatsapp_exporter + a real Prometheus + the project's alert rules and dashboards.

    python3 tests/e2e/prometheus_e2e.py [EXPORTER_BINARY]     (default target/release/whatsapp_exporter)

Needs the `prometheus` binary (Debian/Ubuntu: apt-get install -y prometheus); set PROMETHEUS=/path to
use another one. Python 3 standard library only. Everything listens on 127.0.0.1 only.

What it does:
  1. starts a mock PlugzAPI gateway (GET /instances/{id}/token/{token}/status),
  2. starts the exporter with a config polling that gateway every second, a second exporter in
     --demo mode (simulated gateways of every provider, with PlugChat webhooks), and a third in
     --demo --no-background-polling mode (the probe mode),
  3. starts Prometheus scraping the first two every second and the third through the jobs of
     deploy/prometheus/probe.yml (self-scrape, one /probe per demo gateway) every 2s, with a copy of
     alerts/*.rules.yml in which every `for:` is set to 0s so that alerts fire within seconds
     instead of minutes; reloads both demo exporters once,
  4. checks that every PromQL query of every dashboard is accepted by Prometheus, and that each
     returns data against the demo in both modes (as Grafana runs it over the time since Prometheus
     started, variables at "All", `job` at that mode's jobs) within DATA_TIMEOUT seconds of its start,
  5. makes the mock gateway fail with HTTP 500 and waits for WhatsAppGatewayDown{gateway="e2e"} to
     fire, then lets it recover and waits for the alert to clear,
  6. checks that the gateway token never shows in /metrics, /probe, / or the exporter's log,
  7. runs each shipped deploy/prometheus/*.yml (background.yml, probe.yml, probe-sharded.yml) as it
     is, with only the exporter's address pointed at 127.0.0.1 and the intervals shortened, against the
     exporter started with the example configuration deploy/whatsapp_exporter.yml (its gateway URLs
     pointed at healthy mock gateways) and the shipped gateways.json: every target must be up, every
     gateway counted once, and no alert pending or firing (rules with every `for:` at 0s),
  8. compares sharding on both sides for 1,000 gateway names and n = 2, 3 and 7: the targets that
     Prometheus' `hashmod` relabelling assigns to each shard (/api/v1/targets), a re-implementation of
     that rule in Python (MD5, last 8 bytes big-endian, modulo n), and the gateways that the exporter
     started with `--shard i/n` owns (its status page lists them).

Prints one line per check and finally `e2e: N passed, M failed`; exits 1 if anything failed.
Set E2E_KEEP=1 to keep the temporary directory (configs, logs, TSDB).
"""
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INSTANCE = "3C7AE2E0"
TOKEN = "e2e-secret-token"
GATEWAY = "e2e"
SCRAPE_WARMUP = 15  # seconds of scrapes before the dashboard queries run
PROVIDERS = ("plugzapi", "zapi", "waba", "greenapi", "cloudapi")

# Values for Grafana's variables when running the dashboard queries directly against Prometheus.
VARIABLE_VALUES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print(f"ok   - {what}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL - {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def note(msg):
    print(f"     # {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# mock PlugzAPI gateway
# ------------------------------------------------------------------------------------------------
class MockGateway:
    """GET /instances/{id}/token/{token}/status; `healthy = False` makes it answer HTTP 500."""

    def __init__(self):
        self.healthy = True
        self.requests = 0
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                mock.requests += 1
                m = re.fullmatch(r"/instances/([^/]+)/token/([^/]+)/status", self.path.split("?")[0])
                if not m:
                    return self._send(404, {"error": "not found"})
                if m.group(1) != INSTANCE or m.group(2) != TOKEN:
                    return self._send(401, {"error": "unauthorized"})
                if not mock.healthy:
                    return self._send(500, {"error": "internal server error"})
                return self._send(200, {"connected": True, "session": True,
                                        "error": "You are already connected.",
                                        "smartphoneConnected": True})

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_open(req, timeout):
    """(status, body) of a request (a URL or a urllib Request); status 0 when the connection
    failed."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def http_get(url, timeout=5):
    """(status, body) of a GET."""
    return http_open(url, timeout)


def wait_for(predicate, timeout, interval=0.5):
    """Polls predicate() until it returns something truthy or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "error": f"HTTP {status}: {body[:200]}"}

    def query(self, expr):
        return self.api("query", query=expr)

    def alerts(self, name, **labels):
        data = self.api("alerts")
        out = []
        for a in data.get("data", {}).get("alerts", []):
            if a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in labels.items()):
                out.append(a)
        return out


# ------------------------------------------------------------------------------------------------
# dashboards and rules from the repository
# ------------------------------------------------------------------------------------------------
def substitute(expr, values=None):
    """Replaces Grafana variables ($var, ${var}) with test values; $1 of label_replace stays.
    `values` maps a dashboard's variables to their value (its "All"); any other is `.*`."""
    values = dict(values or {}, **VARIABLE_VALUES)

    def repl(m):
        return values.get(m.group(1) or m.group(2), ".*")
    return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", repl, expr)


def all_values(dash):
    """What Grafana puts for each query variable of a dashboard set to "All": its allValue, or the
    regex its query fixes (provider=~"plugzapi|zapi"), or `.*`."""
    out = {}
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        fixed = re.search(rf'\b{re.escape(v["name"])}=~?"([^"$]+)"', q)
        out[v["name"]] = v.get("allValue") or (fixed.group(1) if fixed else ".*")
    return out


def dashboard_queries():
    """[(dashboard file, where, expr, the dashboard's "All" values)] for every target, annotation and
    label_values() selector."""
    out = []
    ddir = os.path.join(REPO, "dashboards")
    for name in sorted(os.listdir(ddir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(ddir, name)) as f:
            dash = json.load(f)
        values = all_values(dash)
        panels = []
        for p in dash.get("panels", []):
            panels.append(p)
            panels.extend(p.get("panels", []))
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((name, f"panel {p.get('title')!r} {t.get('refId')}", t["expr"], values))
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                out.append((name, f"annotation {a.get('name')!r}", a["expr"], values))
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q, re.S)
            if v.get("type") == "query" and m:
                out.append((name, f"variable {v.get('name')!r}", m.group(1), values))
    return out


def copy_rules(dest):
    """Copies alerts/*.rules.yml with every `for:` set to 0s; returns the number of files."""
    os.makedirs(dest, exist_ok=True)
    adir = os.path.join(REPO, "alerts")
    n = 0
    for name in sorted(os.listdir(adir)):
        if not name.endswith(".rules.yml"):
            continue
        with open(os.path.join(adir, name)) as f:
            text = f.read()
        # The e2e runs for seconds, not minutes: fire as soon as an expression is true.
        text = re.sub(r"(?m)^(\s*)for:\s*(\S+)\s*$", r"\1for: 0s  # e2e: was \2", text)
        with open(os.path.join(dest, name), "w") as f:
            f.write("# Copy made by tests/e2e/prometheus_e2e.py: every `for:` is 0s here.\n" + text)
        n += 1
    return n


# The demo in each mode, as a dashboard's `job` variable picks it: the one job of the background
# mode; in the probe mode, the self-scrape and the probe jobs of deploy/prometheus/probe.yml.
DEMO_MODES = {
    "background": "whatsapp_exporter_demo",
    "probe": "whatsapp_exporter_probe_demo|whatsapp_probe_demo",
}
# How long after Prometheus started the dashboards may take to have data: the demo's stories show
# everything the panels need within the first 90 seconds of its three-minute cycle (the last is
# the Cloud API number's FLAGGED spell, a connection change at 80s).
DATA_TIMEOUT = 150


def demo_probe_jobs(addr, targets_file):
    """The scrape_configs of deploy/prometheus/probe.yml as shipped, for the demo exporter at addr
    in probe mode: its two jobs renamed (the test's other jobs keep theirs), the exporter's address
    at addr, its file_sd at targets_file, scrapes every 2s."""
    with open(os.path.join(REPO, "deploy", "prometheus", "probe.yml")) as f:
        text = f.read()
    text = text[text.index("\nscrape_configs:\n") + len("\nscrape_configs:\n"):]
    text = re.sub(r"(?m)^(\s+- job_name: )whatsapp_exporter\s*$", r"\1whatsapp_exporter_probe_demo", text)
    text = re.sub(r"(?m)^(\s+- job_name: )whatsapp_probe\s*$", r"\1whatsapp_probe_demo", text)
    text = text.replace("whatsapp-exporter.example.internal:10070", addr)
    text = re.sub(r"(?m)^(\s+- )gateways\.json\b.*$", rf"\1{targets_file}", text)
    for key in ("scrape_interval", "scrape_timeout"):
        text = re.sub(rf"(?m)^(\s+){key}: \S+", rf"\g<1>{key}: 2s", text)
    return text


def dashboard_data(res, prom, since):
    """Every dashboard query is valid PromQL, and returns data against the demo in each mode.

    Each query runs as Grafana runs a panel over the time since Prometheus started: a range
    query (for an instant target: its value at some moment of that time), with every variable
    at "All" and `job` at the demo of that mode. Waits until DATA_TIMEOUT seconds after `since` for
    the demo's stories to reach what each panel shows."""
    queries = dashboard_queries()
    per_dashboard = {}
    for dash, where, expr, values in queries:
        r = prom.query(substitute(expr, values))
        ok = r.get("status") == "success"
        per_dashboard.setdefault(dash, [0, 0, []])
        per_dashboard[dash][0] += ok
        per_dashboard[dash][1] += 1
        if not ok:
            per_dashboard[dash][2].append(f"{where}: {r.get('error')}")
    for dash, (ok, total, invalid) in sorted(per_dashboard.items()):
        res.check(ok == total, f"{dash}: {ok}/{total} queries accepted by Prometheus", "; ".join(invalid))

    pending = {}
    for mode, jobs in DEMO_MODES.items():
        for dash, where, expr, values in queries:
            pending[(mode, dash, where)] = substitute(expr, dict(values, job=jobs))
    deadline = time.monotonic() + DATA_TIMEOUT - (time.time() - since)
    late = []
    while True:
        for key, expr in list(pending.items()):
            r = prom.api("query_range", query=expr, start=f"{since:.3f}", end=f"{time.time():.3f}", step="2")
            if r.get("status") == "success" and r.get("data", {}).get("result"):
                del pending[key]
                late.append((time.time() - since, key))
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(3)
    for took, key in late[-3:]:
        note(f"data {took:.0f}s after Prometheus started: {' '.join(key)}")
    for mode in DEMO_MODES:
        empty = [f"{dash}: {where}" for (m, dash, where) in pending if m == mode]
        total = len(queries)
        res.check(not empty, f"{mode} mode: {total - len(empty)}/{total} dashboard queries return data "
                  "against the demo", "no data: " + "; ".join(empty))


def http_post(url, timeout=10):
    """(status, body) of an empty POST."""
    return http_open(urllib.request.Request(url, data=b"", method="POST"), timeout)


# ------------------------------------------------------------------------------------------------
# the test
# ------------------------------------------------------------------------------------------------
def start(cmd, log_path):
    log = open(log_path, "w")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def stop(proc):
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_http_ok(url, proc, timeout):
    def ready():
        if proc.poll() is not None:
            return "exited"
        return http_get(url, timeout=2)[0] == 200
    return wait_for(ready, timeout) is True


def run(res, binary, prometheus_bin, tmp, procs):
    mock = MockGateway()
    mock.start()
    procs.append(mock)
    note(f"mock PlugzAPI gateway on 127.0.0.1:{mock.port}")

    exporter_port, demo_port, probe_port, prom_port = free_port(), free_port(), free_port(), free_port()
    exporter = f"http://127.0.0.1:{exporter_port}"
    demo = f"http://127.0.0.1:{demo_port}"
    probe_demo = f"http://127.0.0.1:{probe_port}"

    config = os.path.join(tmp, "whatsapp_exporter.yml")
    with open(config, "w") as f:
        f.write(f"""global:
  interval: 1s
  timeout: 1s
gateways:
  - name: {GATEWAY}
    provider: plugzapi
    url: http://127.0.0.1:{mock.port}
    instance: {INSTANCE}
    token: {TOKEN}
""")

    exporter_log = os.path.join(tmp, "exporter.log")
    p = start([binary, "--config.file", config, "--web.listen-address", f"127.0.0.1:{exporter_port}"],
              exporter_log)
    procs.append(p)
    demo_log = os.path.join(tmp, "exporter-demo.log")
    d = start([binary, "--demo", "--web.listen-address", f"127.0.0.1:{demo_port}"], demo_log)
    procs.append(d)
    probe_log = os.path.join(tmp, "exporter-demo-probe.log")
    dp = start([binary, "--demo", "--no-background-polling", "--web.listen-address", f"127.0.0.1:{probe_port}"],
               probe_log)
    procs.append(dp)

    if not res.check(wait_http_ok(f"{exporter}/metrics", p, 30), "exporter serves /metrics",
                     f"log {exporter_log}:\n{tail(exporter_log)}"):
        return
    res.check(wait_http_ok(f"{demo}/metrics", d, 30), "demo exporter serves /metrics",
              f"log {demo_log}:\n{tail(demo_log)}")
    res.check(wait_http_ok(f"{probe_demo}/-/ready", dp, 30), "demo exporter in probe mode is ready",
              f"log {probe_log}:\n{tail(probe_log)}")
    # The probe job's targets: the demo's configured gateways (a server, not its instances), as
    # its status page lists them before any probe.
    page = http_get(f"{probe_demo}/", timeout=10)[1]
    # The gateways table only: the Pushes table below it names gateways and Meta apps too.
    polled = page.split("<h2>Pushes</h2>")[0]
    probe_targets = sorted(set(re.findall(r'<td data-label="Gateway">([^<]+)</td>', polled)))
    res.check(len(probe_targets) >= len(PROVIDERS), f"demo gateways to probe: {probe_targets}")
    probe_sd = os.path.join(tmp, "demo-gateways.json")
    with open(probe_sd, "w") as f:
        json.dump([{"targets": probe_targets}], f)

    # Prometheus, scraping both exporters every second, with the project's rules (for: 0s).
    rules_dir = os.path.join(tmp, "rules")
    res.check(copy_rules(rules_dir) > 0, "alerts/*.rules.yml copied with for: 0s")
    prom_config = os.path.join(tmp, "prometheus.yml")
    with open(prom_config, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {rules_dir}/*.yml
scrape_configs:
  - job_name: whatsapp_exporter
    static_configs:
      - targets: ["127.0.0.1:{exporter_port}"]
  - job_name: whatsapp_exporter_demo
    static_configs:
      - targets: ["127.0.0.1:{demo_port}"]
""" + demo_probe_jobs(f"127.0.0.1:{probe_port}", probe_sd))
    prom_log = os.path.join(tmp, "prometheus.log")
    pr = start([prometheus_bin, f"--config.file={prom_config}",
                f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--storage.tsdb.retention.time=1h"], prom_log)
    procs.append(pr)
    prom = Prometheus(prom_port)
    prom_started = time.time()
    if not res.check(wait_http_ok(f"{prom.base}/-/ready", pr, 60), "prometheus is ready",
                     f"log {prom_log}:\n{tail(prom_log)}"):
        return

    want_targets = 3 + len(probe_targets)

    def targets_up():
        data = prom.api("targets").get("data", {}).get("activeTargets", [])
        return len(data) == want_targets and all(t.get("health") == "up" for t in data)
    res.check(wait_for(targets_up, 30), f"the exporters and the {len(probe_targets)} probes are scraped (targets up)",
              json.dumps([(t.get("scrapeUrl"), t.get("health"), t.get("lastError"))
                          for t in prom.api("targets").get("data", {}).get("activeTargets", [])]))

    # A reload of each demo exporter, for the dashboards' reload annotation to mark.
    time.sleep(2)
    for url in (demo, probe_demo):
        status, body = http_post(f"{url}/-/reload")
        res.check(status == 200, f"POST {url}/-/reload", f"HTTP {status}: {body[:200]}")
    note(f"letting Prometheus scrape for {SCRAPE_WARMUP}s")
    time.sleep(SCRAPE_WARMUP)

    def value(expr):
        r = prom.query(expr).get("data", {}).get("result", [])
        return r[0]["value"][1] if r else None
    for metric in ("whatsapp_up", "whatsapp_connected"):
        got = value(f'{metric}{{gateway="{GATEWAY}"}}')
        res.check(got == "1", f'{metric}{{gateway="{GATEWAY}"}} is 1 in Prometheus', f"got {got}")
    res.check(mock.requests >= 5, "the exporter polls the gateway on its interval",
              f"{mock.requests} requests to the mock gateway")

    # What the demo exporter offers the dashboards (informational: the data check below decides).
    providers = prom.query('count by (provider) (whatsapp_up{job="whatsapp_exporter_demo"})')
    seen = {r["metric"].get("provider") for r in providers.get("data", {}).get("result", [])}
    note(f"demo mode gateways by provider: {sorted(seen)}; missing: {sorted(set(PROVIDERS) - seen) or 'none'}")
    note("demo mode PlugChat metrics: " + ("yes" if value(
        'count(whatsapp_webhook_events_total{job="whatsapp_exporter_demo", provider="plugchat"})') else "none"))

    # The rules load and evaluate without errors.
    groups = prom.api("rules").get("data", {}).get("groups", [])
    rules = [r for g in groups for r in g.get("rules", [])]
    broken = [f"{r.get('name')}: {r.get('lastError')}" for r in rules if r.get("health") not in ("ok", "unknown")]
    res.check(rules and not broken, f"{len(rules)} rules loaded and evaluate without errors", "; ".join(broken))
    res.check(not prom.alerts("WhatsAppGatewayDown", gateway=GATEWAY),
              f"WhatsAppGatewayDown is not active for {GATEWAY} while the gateway answers")

    # (a) every dashboard query is valid PromQL for Prometheus, and returns data against the demo
    # in both modes.
    dashboard_data(res, prom, prom_started)

    # The token must not leak while everything works.
    def leak_check(when):
        for url in (f"{exporter}/metrics", f"{exporter}/", f"{exporter}/probe?target={GATEWAY}"):
            status, body = http_get(url)
            res.check(status == 200 and TOKEN not in body, f"{when}: token absent from {url}",
                      f"HTTP {status}" if status != 200 else "the token is in the page")
        with open(exporter_log, errors="replace") as f:
            res.check(TOKEN not in f.read(), f"{when}: token absent from the exporter log")

    leak_check("gateway up")

    # (b) outage: the mock answers HTTP 500; the alert must fire.
    mock.healthy = False
    note("mock gateway now answers HTTP 500")
    firing = wait_for(lambda: [a for a in prom.alerts("WhatsAppGatewayDown", gateway=GATEWAY)
                               if a.get("state") == "firing"], 30)
    pending = prom.alerts("WhatsAppGatewayDown", gateway=GATEWAY)
    res.check(bool(firing), f'WhatsAppGatewayDown{{gateway="{GATEWAY}"}} fires within 30s of the outage',
              f"state: {[a.get('state') for a in pending] or 'absent'}")
    if firing:
        a = firing[0]
        res.check(a["labels"].get("severity") == "critical" and a["labels"].get("provider") == "plugzapi"
                  and "runbook_url" in a.get("annotations", {}),
                  "the alert carries severity, provider and a runbook_url", json.dumps(a))

    status, body = http_get(f"{exporter}/metrics")
    up_line = re.search(rf'^whatsapp_up{{[^}}]*gateway="{GATEWAY}"[^}}]*}} (\S+)', body, re.M)
    res.check(up_line is not None and float(up_line.group(1)) == 0, "exporter: whatsapp_up is 0 during the outage",
              up_line.group(0) if up_line else "no whatsapp_up line")
    res.check(not re.search(rf'^whatsapp_connected{{[^}}]*gateway="{GATEWAY}"', body, re.M),
              "exporter: whatsapp_connected is absent while whatsapp_up is 0 (SPEC)")
    res.check(not [a for a in prom.alerts("WhatsAppNumberDisconnected", gateway=GATEWAY)],
              "WhatsAppNumberDisconnected does not fire while the API is down")
    leak_check("gateway failing")

    # Recovery: the alert clears.
    mock.healthy = True
    note("mock gateway healthy again")
    cleared = wait_for(lambda: not prom.alerts("WhatsAppGatewayDown", gateway=GATEWAY), 30)
    res.check(cleared, "WhatsAppGatewayDown clears within 30s of the recovery")


# ------------------------------------------------------------------------------------------------
# the shipped deploy/prometheus/*.yml against the example configuration
# ------------------------------------------------------------------------------------------------
EXAMPLE_TOKEN = "e2e-example-token-0f3a"
EXAMPLE_ENV = {
    "PLUGZAPI_TOKEN": EXAMPLE_TOKEN,
    "GREENAPI_TOKEN": EXAMPLE_TOKEN,
    "META_SYSTEM_USER_TOKEN": EXAMPLE_TOKEN,
    "PLUGCHAT_SECRET": "e2e-plugchat-secret-0123456789abcdef",
}


class HealthyGateways:
    """One mock on 127.0.0.1 answering as a healthy gateway of each provider of the example config.

    The answers follow the providers' documented responses:
    - PlugzAPI / Z-API status: https://developer.z-api.io/en/instance/status
      (`connected`, `error` "You are already connected.", `smartphoneConnected`; plus `session`).
    - Green API getStateInstance: https://green-api.com/en/docs/api/account/GetStateInstance
      (`{"stateInstance": "authorized"}`).
    - Cloud API phone number fields (status, quality_rating, name_status, code_verification_status,
      throughput, messaging_limit_tier): the Graph phone number node as proxied in
      https://docs.kapso.ai/api/meta/whatsapp/phone-numbers/get-phone-number-details.md; health_status as
      in https://docs.360dialog.com/docs/waba-basics/waba-integration/messaging-health-status.
    """

    PLUGZAPI = {"connected": True, "session": True, "error": "You are already connected.",
                "smartphoneConnected": True}
    GREENAPI = {"stateInstance": "authorized"}

    def __init__(self, token):
        self.requests = {}
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/instances/([^/]+)/token/([^/]+)/status", path)
                if m:
                    return self._answer("plugzapi", m.group(2) == token, HealthyGateways.PLUGZAPI)
                m = re.fullmatch(r"/waInstance([^/]+)/getStateInstance/([^/]+)", path)
                if m:
                    return self._answer("greenapi", m.group(2) == token, HealthyGateways.GREENAPI)
                m = re.fullmatch(r"/v\d+\.\d+/(\d+)", path)
                if m:
                    ok = self.headers.get("Authorization") == f"Bearer {token}"
                    return self._answer("cloudapi", ok, {
                        "status": "CONNECTED", "quality_rating": "GREEN", "name_status": "APPROVED",
                        "code_verification_status": "VERIFIED", "throughput": {"level": "STANDARD"},
                        "messaging_limit_tier": "TIER_1K", "id": m.group(1),
                        "health_status": {"can_send_message": "AVAILABLE", "entities": [
                            {"entity_type": "PHONE_NUMBER", "id": m.group(1), "can_send_message": "AVAILABLE"},
                            {"entity_type": "WABA", "id": "102290129340398", "can_send_message": "AVAILABLE"}]}})
                self._send(404, {"error": "not found"})

            def _answer(self, provider, authorized, body):
                mock.requests[provider] = mock.requests.get(provider, 0) + 1
                if not authorized:
                    return self._send(401, {"error": "unauthorized"})
                self._send(200, body)

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def example_config(mock_port):
    """deploy/whatsapp_exporter.yml with every gateway's url at the mock and 1s intervals."""
    with open(os.path.join(REPO, "deploy", "whatsapp_exporter.yml")) as f:
        text = f.read()
    names = re.findall(r"(?m)^  - name: (\S+)", text)
    text = re.sub(r"(?m)^    url: .*\n", "", text)
    text = re.sub(r"(?m)^(    provider: \S+.*\n)", rf"\1    url: http://127.0.0.1:{mock_port}\n", text)
    text = re.sub(r"(?m)^(\s+)interval: \S+", r"\1interval: 1s", text)
    text = re.sub(r"(?m)^(\s+)timeout: \S+", r"\1timeout: 1s", text)
    return text, names


def gateways_json_names():
    with open(os.path.join(REPO, "deploy", "prometheus", "gateways.json")) as f:
        return [t for g in json.load(f) for t in g["targets"]]


def shipped_prometheus_config(name, exporter_addr, dest_dir):
    """deploy/prometheus/NAME.yml as shipped, with the exporter's address at 127.0.0.1 and 1s intervals,
    laid out under dest_dir at the same relative places as in the repository, so that its relative
    `rule_files` (the rules, every `for:` 0s) and `files: [gateways.json]` hold unchanged."""
    with open(os.path.join(REPO, "deploy", "prometheus", f"{name}.yml")) as f:
        text = f.read()
    text = re.sub(r"whatsapp-exporter(-\d+|-\$1)?(\.whatsapp-exporter|\.example\.internal):10070",
                  exporter_addr, text)
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval", "refresh_interval"):
        text = re.sub(rf"(?m)^(\s+){key}: \S+", rf"\g<1>{key}: 1s", text)
    pdir = os.path.join(dest_dir, "deploy", "prometheus")
    os.makedirs(pdir, exist_ok=True)
    shutil.copy(os.path.join(REPO, "deploy", "prometheus", "gateways.json"), pdir)
    copy_rules(os.path.join(dest_dir, "alerts"))
    path = os.path.join(pdir, f"{name}.yml")
    with open(path, "w") as f:
        f.write(text)
    return path, text


def hashmod(value, modulus):
    """Prometheus' hashmod relabel action (model/relabel/relabel.go): MD5 of the value, its last 8
    bytes as a big-endian integer, modulo the modulus."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def run_shipped(res, binary, prometheus_bin, tmp):
    names = gateways_json_names()
    config_text, config_names = example_config(0)
    res.check(sorted(names) == sorted(config_names),
              "deploy/prometheus/gateways.json lists the gateways of deploy/whatsapp_exporter.yml",
              f"{sorted(names)} vs {sorted(config_names)}")
    mock = HealthyGateways(EXAMPLE_TOKEN)
    try:
        config_text, _ = example_config(mock.port)
        config = os.path.join(tmp, "example.yml")
        with open(config, "w") as f:
            f.write(config_text)
        env = dict(os.environ, **EXAMPLE_ENV)
        for name in ("background", "probe", "probe-sharded"):
            run_one_shipped(res, binary, prometheus_bin, tmp, name, config, env, names)
    finally:
        mock.stop()


def run_one_shipped(res, binary, prometheus_bin, tmp, name, config, env, names):
    work = os.path.join(tmp, f"shipped-{name}")
    os.makedirs(work, exist_ok=True)
    exp_port, prom_port = free_port(), free_port()
    addr = f"127.0.0.1:{exp_port}"
    path, text = shipped_prometheus_config(name, addr, work)
    args = [binary, "--config.file", config, "--web.listen-address", addr]
    expected = set(names)
    if name != "background":
        args.append("--no-background-polling")
    m = re.search(r"modulus: (\d+)", text)
    if m:
        n = int(m.group(1))
        keep = int(re.search(r'regex: "(\d+)"\s+# SHARD', text).group(1))
        args += ["--shard", f"{keep}/{n}"]
        expected = {g for g in names if hashmod(g, n) == keep}
    procs = []
    exp_log, prom_log = os.path.join(work, "exporter.log"), os.path.join(work, "prometheus.log")
    try:
        log = open(exp_log, "w")
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env))
        log.close()
        if not res.check(wait_http_ok(f"http://{addr}/-/ready", procs[0], 20),
                         f"{name}.yml: the exporter starts with the example configuration", tail(exp_log)):
            return
        procs.append(start([prometheus_bin, f"--config.file={path}",
                            f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                            f"--web.listen-address=127.0.0.1:{prom_port}"], prom_log))
        prom = Prometheus(prom_port)
        if not res.check(wait_http_ok(f"{prom.base}/-/ready", procs[1], 60),
                         f"{name}.yml: prometheus is ready", tail(prom_log)):
            return
        want_targets = 1 if name == "background" else 1 + len(expected)

        def all_up():
            data = prom.api("targets").get("data", {}).get("activeTargets", [])
            return len(data) == want_targets and all(t.get("health") == "up" for t in data)
        ok = wait_for(all_up, 30)
        active = prom.api("targets").get("data", {}).get("activeTargets", [])
        res.check(ok, f"{name}.yml: all {want_targets} targets up",
                  json.dumps([(t["labels"].get("job"), t["labels"].get("instance"), t.get("health"),
                               t.get("lastError")) for t in active]))

        def gateways_up():
            r = prom.query("whatsapp_up == 1").get("data", {}).get("result", [])
            return {x["metric"].get("gateway") for x in r} == expected
        res.check(wait_for(gateways_up, 30), f"{name}.yml: whatsapp_up is 1 for {sorted(expected)}",
                  json.dumps(prom.query("whatsapp_up").get("data", {}).get("result", [])))
        dup = prom.query("count by (gateway) (whatsapp_up) > 1").get("data", {}).get("result", [])
        res.check(not dup, f"{name}.yml: every gateway's series come from one job",
                  json.dumps([d["metric"] for d in dup]))
        if name != "background":
            own = prom.query('whatsapp_exporter_build_info{job="whatsapp_exporter"}').get("data", {}).get("result", [])
            res.check(len(own) == 1, f"{name}.yml: the self-scrape job has the exporter's own metrics")
        # A few evaluations (1s each) with every `for:` at 0s: anything true would be firing now.
        time.sleep(5)
        alerts = prom.api("alerts").get("data", {}).get("alerts", [])
        res.check(not alerts, f"{name}.yml: no alert pending or firing for the healthy setup",
                  json.dumps([(a["labels"].get("alertname"), a["labels"].get("gateway"), a.get("state"))
                              for a in alerts]))
        groups = prom.api("rules").get("data", {}).get("groups", [])
        broken = [r.get("name") for g in groups for r in g.get("rules", []) if r.get("health") == "err"]
        res.check(groups and not broken, f"{name}.yml: its rule files load and evaluate", str(broken))
    finally:
        for p in reversed(procs):
            stop(p)


# ------------------------------------------------------------------------------------------------
# --shard i/n against Prometheus' hashmod
# ------------------------------------------------------------------------------------------------
SHARD_NAMES = 1000
SHARD_MODULI = (2, 3, 7)


def run_hashmod(res, binary, prometheus_bin, tmp):
    work = os.path.join(tmp, "hashmod")
    os.makedirs(work, exist_ok=True)
    names = [f"gw-{i:04d}" for i in range(SHARD_NAMES // 2)] + \
            [f"store.{i}_sales-{i * 7919 % 1000}" for i in range(SHARD_NAMES - SHARD_NAMES // 2)]
    closed = free_port()  # nothing listens there: targets and gateways are never reached
    with open(os.path.join(work, "targets.json"), "w") as f:
        json.dump([{"targets": names}], f)
    jobs = ""
    for n in SHARD_MODULI:
        jobs += f"""  - job_name: hashmod_{n}
    scrape_interval: 1h
    file_sd_configs:
      - files: [{work}/targets.json]
    relabel_configs:
      - source_labels: [__address__]
        target_label: gateway
      - source_labels: [__address__]
        modulus: {n}
        target_label: shard
        action: hashmod
      - target_label: __address__
        replacement: 127.0.0.1:{closed}
"""
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1h\nscrape_configs:\n" + jobs)
    prom_port = free_port()
    prom_log = os.path.join(work, "prometheus.log")
    pr = start([prometheus_bin, f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{prom_port}"], prom_log)
    try:
        prom = Prometheus(prom_port)
        if not res.check(wait_http_ok(f"{prom.base}/-/ready", pr, 60), "hashmod: prometheus is ready",
                         tail(prom_log)):
            return

        def assigned():
            data = prom.api("targets", state="active").get("data", {}).get("activeTargets", [])
            return data if len(data) == SHARD_NAMES * len(SHARD_MODULI) else None
        targets = wait_for(assigned, 30) or []
        prom_shard = {(int(t["labels"]["job"].split("_")[1]), t["labels"]["gateway"]): int(t["labels"]["shard"])
                      for t in targets}
        if not res.check(len(prom_shard) == SHARD_NAMES * len(SHARD_MODULI),
                         f"hashmod: Prometheus relabelled {SHARD_NAMES} targets for n = {SHARD_MODULI}",
                         f"{len(prom_shard)} targets"):
            return
        wrong = [(n, g) for (n, g), i in prom_shard.items() if hashmod(g, n) != i]
        res.check(not wrong, "hashmod: the Python rule (MD5, last 8 bytes big-endian, modulo n) is Prometheus'",
                  str(wrong[:5]))
    finally:
        stop(pr)

    # The exporter: each --shard i/n owns exactly the names Prometheus sends to shard i.
    config = os.path.join(work, "gateways.yml")
    with open(config, "w") as f:
        f.write("gateways:\n" + "".join(
            f"  - name: {g}\n    provider: plugzapi\n    url: http://127.0.0.1:{closed}\n"
            f"    instance: I\n    token: t\n" for g in names))
    for n in SHARD_MODULI:
        wrong = []
        for i in range(n):
            port = free_port()
            log_path = os.path.join(work, f"exporter-{i}-{n}.log")
            p = start([binary, "--config.file", config, "--shard", f"{i}/{n}", "--no-background-polling",
                       "--web.listen-address", f"127.0.0.1:{port}"], log_path)
            try:
                if not wait_http_ok(f"http://127.0.0.1:{port}/-/ready", p, 20):
                    wrong.append(f"--shard {i}/{n} did not start: {tail(log_path)}")
                    continue
                status, page = http_get(f"http://127.0.0.1:{port}/", timeout=10)
                owned = set(re.findall(r'<td data-label="Gateway">([^<]+)</td>', page))
                want = {g for g in names if prom_shard[(n, g)] == i}
                if status != 200 or owned != want:
                    wrong.append(f"--shard {i}/{n}: {len(owned)} gateways, {len(owned - want)} not Prometheus' "
                                 f"shard {i}, {len(want - owned)} of it missing")
            finally:
                stop(p)
        res.check(not wrong, f"hashmod: --shard i/{n} owns exactly Prometheus' hashmod shard i, for every i",
                  "; ".join(wrong))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target", "release", "whatsapp_exporter")
    binary = os.path.abspath(binary)
    prometheus_bin = os.environ.get("PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
    res = Results()
    tmp = tempfile.mkdtemp(prefix="whatsapp-e2e-")
    procs = []

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        ok = res.check(os.access(binary, os.X_OK), f"exporter binary {binary}", "not found or not executable")
        ok = res.check(os.access(prometheus_bin, os.X_OK), f"prometheus binary {prometheus_bin}",
                       "not found: apt-get install -y prometheus, or set PROMETHEUS") and ok
        if ok:
            run(res, binary, prometheus_bin, tmp, procs)
            for part in (run_shipped, run_hashmod):
                try:
                    part(res, binary, prometheus_bin, tmp)
                except Exception as e:  # report, go on with the next part
                    res.check(False, part.__name__, f"{type(e).__name__}: {e}")
    except Exception as e:  # report, then clean up
        res.check(False, "e2e run", f"{type(e).__name__}: {e}")
    finally:
        for p in reversed(procs):
            try:
                if isinstance(p, MockGateway):
                    p.stop()
                else:
                    stop(p)
            except Exception as e:  # keep stopping the others
                print(f"     # could not stop {p}: {e}", flush=True)
        if os.environ.get("E2E_KEEP") or (res.failed and procs):
            note(f"kept {tmp} (configs, logs, TSDB)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"e2e: {res.passed} passed, {res.failed} failed", flush=True)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
