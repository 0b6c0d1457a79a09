#!/usr/bin/env python3
"""End-to-end test: whatsapp_exporter + a real Prometheus + the project's alert rules and dashboards.

    python3 tests/e2e/prometheus_e2e.py [EXPORTER_BINARY]     (default target/release/whatsapp_exporter)

Needs the `prometheus` binary (Debian/Ubuntu: apt-get install -y prometheus); set PROMETHEUS=/path to
use another one. Python 3 standard library only. Everything listens on 127.0.0.1 only.

What it does:
  1. starts a mock PlugzAPI gateway (GET /instances/{id}/token/{token}/status),
  2. starts the exporter with a config polling that gateway every second, and a second exporter in
     --demo mode (simulated gateways of every provider, with PlugChat webhooks),
  3. starts Prometheus scraping both every second, with a copy of alerts/*.rules.yml in which every
     `for:` is set to 0s so that alerts fire within seconds instead of minutes,
  4. checks that every PromQL query of every dashboard is accepted by Prometheus (and reports the
     ones that return no data; at least half must return data),
  5. makes the mock gateway fail with HTTP 500 and waits for WhatsAppGatewayDown{gateway="e2e"} to
     fire, then lets it recover and waits for the alert to clear,
  6. checks that the gateway token never shows in /metrics, /probe, / or the exporter's log.

Prints one line per check and finally `e2e: N passed, M failed`; exits 1 if anything failed.
Set E2E_KEEP=1 to keep the temporary directory (configs, logs, TSDB).
"""
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


def http_get(url, timeout=5):
    """(status, body) of a GET; status 0 when the connection failed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


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
def substitute(expr):
    """Replaces Grafana variables ($var, ${var}) with test values; $1 of label_replace stays."""
    def repl(m):
        return VARIABLE_VALUES.get(m.group(1) or m.group(2), ".*")
    return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", repl, expr)


def dashboard_queries():
    """[(dashboard file, where, expr)] for every target, annotation and label_values() selector."""
    out = []
    ddir = os.path.join(REPO, "dashboards")
    for name in sorted(os.listdir(ddir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(ddir, name)) as f:
            dash = json.load(f)
        panels = []
        for p in dash.get("panels", []):
            panels.append(p)
            panels.extend(p.get("panels", []))
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((name, f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                out.append((name, f"annotation {a.get('name')!r}", a["expr"]))
        for v in dash.get("templating", {}).get("list", []):
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q, re.S)
            if v.get("type") == "query" and m:
                out.append((name, f"variable {v.get('name')!r}", m.group(1)))
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

    exporter_port, demo_port, prom_port = free_port(), free_port(), free_port()
    exporter = f"http://127.0.0.1:{exporter_port}"
    demo = f"http://127.0.0.1:{demo_port}"

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

    if not res.check(wait_http_ok(f"{exporter}/metrics", p, 30), "exporter serves /metrics",
                     f"log {exporter_log}:\n{tail(exporter_log)}"):
        return
    res.check(wait_http_ok(f"{demo}/metrics", d, 30), "demo exporter serves /metrics",
              f"log {demo_log}:\n{tail(demo_log)}")

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
""")
    prom_log = os.path.join(tmp, "prometheus.log")
    pr = start([prometheus_bin, f"--config.file={prom_config}",
                f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--storage.tsdb.retention.time=1h"], prom_log)
    procs.append(pr)
    prom = Prometheus(prom_port)
    if not res.check(wait_http_ok(f"{prom.base}/-/ready", pr, 60), "prometheus is ready",
                     f"log {prom_log}:\n{tail(prom_log)}"):
        return

    def targets_up():
        data = prom.api("targets").get("data", {}).get("activeTargets", [])
        return len(data) == 2 and all(t.get("health") == "up" for t in data)
    res.check(wait_for(targets_up, 30), "both exporters are scraped (targets up)",
              json.dumps([(t.get("scrapeUrl"), t.get("health"), t.get("lastError"))
                          for t in prom.api("targets").get("data", {}).get("activeTargets", [])]))

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
        'count(whatsapp_plugchat_webhooks_total{job="whatsapp_exporter_demo"})') else "none"))

    # The rules load and evaluate without errors.
    groups = prom.api("rules").get("data", {}).get("groups", [])
    rules = [r for g in groups for r in g.get("rules", [])]
    broken = [f"{r.get('name')}: {r.get('lastError')}" for r in rules if r.get("health") not in ("ok", "unknown")]
    res.check(rules and not broken, f"{len(rules)} rules loaded and evaluate without errors", "; ".join(broken))
    res.check(not prom.alerts("WhatsAppGatewayDown", gateway=GATEWAY),
              f"WhatsAppGatewayDown is not active for {GATEWAY} while the gateway answers")

    # (a) every dashboard query is valid PromQL for Prometheus; most return data.
    queries = dashboard_queries()
    invalid, empty = [], []
    per_dashboard = {}
    for dash, where, expr in queries:
        r = prom.query(substitute(expr))
        per_dashboard.setdefault(dash, [0, 0])[1] += 1
        if r.get("status") != "success":
            invalid.append(f"{dash}: {where}: {r.get('error')}")
            continue
        per_dashboard[dash][0] += 1
        if not r.get("data", {}).get("result"):
            empty.append(f"{dash}: {where}")
    for dash, (ok, total) in sorted(per_dashboard.items()):
        res.check(ok == total, f"{dash}: {ok}/{total} queries accepted by Prometheus",
                  "; ".join(i for i in invalid if i.startswith(dash + ":")))
    with_data = len(queries) - len(invalid) - len(empty)
    for e in empty:
        note(f"no data: {e}")
    res.check(queries and with_data * 2 >= len(queries),
              f"{with_data}/{len(queries)} dashboard queries return data (at least half must)")

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
