#!/usr/bin/env python3
"""Targets Prometheus discovers: a real Prometheus runs deploy/prometheus/probe-sd.yml (http_sd_configs
on each replica's GET /sd, probes relabelled to /probe) against three release exporters.

    python3 tests/e2e/sd_prometheus_e2e.py [EXPORTER_BINARY]   (default target/release/whatsapp_exporter)

Needs the `prometheus` binary (Debian: apt-get install -y prometheus; PROMETHEUS=/path for another).
Python 3 standard library only; everything listens on 127.0.0.1. It:
  1. starts one mock serving a Z-API status endpoint and an Evolution API server whose listing has the
     instances alpha and beta,
  2. starts three exporters with --shard i/3 --no-background-polling, reading a configuration of
     twelve Z-API gateways and the Evolution server `evo` with `instances: all`,
  3. starts Prometheus with probe-sd.yml as shipped, only the replicas' addresses pointed at
     127.0.0.1 and the intervals shortened,
  4. waits until /api/v1/targets holds every gateway, the server and its two discovered instances as
     probe targets, each up and probed on the replica that owns it (--shard, Prometheus' hashmod),
  5. checks with PromQL that every gateway's and instance's whatsapp_connected is stored once.
It ends by itself within DEADLINE seconds and stops only the processes it started. Prints one line
per check, exits 1 if any failed.
"""
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEADLINE = 150
START = time.monotonic()
SHARDS = 3
KEY = "sd-e2e-evolution-key"
ZAPI = [f"gw-{i}" for i in range(12)]
INSTANCES = ["alpha", "beta"]


def left():
    return DEADLINE - (time.monotonic() - START)


def owner(name, n):
    return int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % n


def listing():
    with open(os.path.join(REPO, "tests/fixtures/real/evolution/fetch_instances.json")) as f:
        row = json.load(f)["answers"]["/instance/fetchInstances"]["body"][0]
    rows = []
    for i, name in enumerate(INSTANCES):
        r = dict(row)
        r.update(id=f"cm2inst{i:018}", name=name, connectionStatus="open")
        rows.append(r)
    return json.dumps(rows).encode()


class Gateways(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    LISTING = b""

    def do_GET(self):
        if self.path.startswith("/instance/fetchInstances"):
            body = self.LISTING
        else:
            body = b'{"connected":true,"session":true,"error":"","smartphoneConnected":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def wait_ready(url, proc):
    while left() > 0:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url}: not ready in time")


def prometheus_config(ports):
    with open(os.path.join(REPO, "deploy/prometheus/probe-sd.yml")) as f:
        text = f.read()
    text = text.replace("rule_files:\n  - ../../alerts/whatsapp_exporter.rules.yml\n", "")
    for i, port in enumerate(ports):
        text = text.replace(f"whatsapp-exporter-{i}.whatsapp-exporter:10070", f"127.0.0.1:{port}")
    for old, new in (("scrape_interval: 60s", "scrape_interval: 2s"),
                     ("scrape_interval: 30s", "scrape_interval: 2s"),
                     ("scrape_timeout: 15s", "scrape_timeout: 2s"),
                     ("scrape_timeout: 10s", "scrape_timeout: 2s"),
                     ("refresh_interval: 1m", "refresh_interval: 1s")):
        text = text.replace(old, new)
    assert "whatsapp-exporter-" not in text.split("scrape_configs:")[1], "an address left unreplaced"
    return text


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target/release/whatsapp_exporter")
    prom = os.environ.get("PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"
    tmp = tempfile.mkdtemp(prefix="sd-e2e-")
    procs = []
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    Gateways.LISTING = listing()
    mock = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateways)
    threading.Thread(target=mock.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{mock.server_port}"
    try:
        cfg = "global:\n  interval: 2s\n  timeout: 1s\ngateways:\n"
        for n in ZAPI:
            cfg += f"  - name: {n}\n    provider: zapi\n    url: {url}\n    instance: I\n    token: sd-e2e-token\n"
        cfg += f"  - name: evo\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instances: all\n"
        config = os.path.join(tmp, "config.yml")
        with open(config, "w") as f:
            f.write(cfg)
        ports = [free_port() for _ in range(SHARDS)]
        for i, port in enumerate(ports):
            log = open(os.path.join(tmp, f"exporter-{i}.log"), "w")
            procs.append(subprocess.Popen(
                [binary, "--config.file", config, "--shard", f"{i}/{SHARDS}", "--no-background-polling",
                 "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
                stdout=log, stderr=subprocess.STDOUT))
        for i, port in enumerate(ports):
            wait_ready(f"http://127.0.0.1:{port}/-/ready", procs[i])

        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write(prometheus_config(ports))
        prom_port = free_port()
        plog = open(os.path.join(tmp, "prometheus.log"), "w")
        procs.append(subprocess.Popen(
            [prom, f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=plog, stderr=subprocess.STDOUT))
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", procs[-1])

        want = {n: owner(n, SHARDS) for n in ZAPI + ["evo"]}
        want.update({f"evo/{i}": owner("evo", SHARDS) for i in INSTANCES})
        got = {}
        while left() > 30:
            targets = get_json(f"{api}/targets?state=active")["data"]["activeTargets"]
            got = {t["labels"].get("gateway"): (t["labels"].get("exporter"), t["health"], t["labels"])
                   for t in targets if t["labels"].get("job") == "whatsapp_probe"}
            if set(got) == set(want) and all(h == "up" for _, h, _ in got.values()):
                break
            time.sleep(1)
        check(set(got) == set(want), f"Prometheus discovered every target from /sd: {sorted(got)}")
        check(all(h == "up" for _, h, _ in got.values()),
              f"every discovered target is scraped up: {[(g, h) for g, (_, h, _) in got.items() if h != 'up']}")
        misplaced = [g for g, (e, _, _) in got.items() if g in want and e != f"127.0.0.1:{ports[want[g]]}"]
        check(not misplaced, f"every target probed on the replica that owns it (misplaced: {misplaced})")
        labels = {g: (l.get("provider"), l.get("server")) for g, (_, _, l) in got.items()}
        check(labels.get("evo/alpha") == ("evolution", "evo") and labels.get("gw-0") == ("zapi", None),
              f"targets carry provider and, for an instance, server: {labels.get('evo/alpha')}, {labels.get('gw-0')}")

        expect = set(ZAPI) | {f"evo/{i}" for i in INSTANCES}
        counts = {}
        while left() > 5:
            q = urllib.parse.quote('count by (gateway) (whatsapp_connected{job="whatsapp_probe"})')
            res = get_json(f"{api}/query?query={q}")["data"]["result"]
            counts = {r["metric"].get("gateway"): float(r["value"][1]) for r in res}
            if set(counts) == expect:
                break
            time.sleep(1)
        check(set(counts) == expect and set(counts.values()) == {1.0},
              f"whatsapp_connected stored once per gateway and instance: {counts}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        mock.shutdown()
        if os.environ.get("E2E_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"sd e2e: {len(failures)} failed" if failures else "sd e2e: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
