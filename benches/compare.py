#!/usr/bin/env python3
"""Side-by-side figures: whatsapp_exporter against blackbox_exporter, on this machine.

Starts a local nginx that serves the PlugzAPI status JSON, blackbox_exporter and the exporter
(release build), and prints:

  1. background polling: exporter CPU per poll, 500 gateways at a 1 s interval;
  2. /probe: CPU per request, driven by wrk, against blackbox_exporter's /probe of the same URL
     (a gateway is called at most once per interval, so after the first these answer from the
     last poll); and CPU per /probe that calls its gateway (2,000 gateways, one probe each);
  3. 10,000 gateways: all polled within their first interval (counted by `whatsapp_up 1`: every
     gateway has a `whatsapp_up 0` series before its first poll), RSS, /metrics render time
     (median, gzip) while polls keep finishing;
  4. idle: CPU between polls and RSS with a handful of gateways.

CPU is read from /proc/PID/stat (user + system ticks), so the figures are the process's own, not
wall time. Every server listens on 127.0.0.1 only, and everything started is stopped by PID.

Usage: python3 benches/compare.py [path/to/whatsapp_exporter]   (needs: nginx, wrk,
prometheus-blackbox-exporter from Debian: apt-get install nginx-light wrk prometheus-blackbox-exporter)
"""

import gzip
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
STATUS = b'{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":true}'
TOKEN = "bench-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def get(url, gz=False, timeout=30):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        if r.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body.decode()


def wait_http(url, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            get(url, timeout=2)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def start_nginx(procs, tmp):
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/instances/[^/]+/token/[^/]+/status$ {{
      default_type application/json;
      return 200 '{STATUS.decode()}';
    }}
  }}
}}
""")
    procs.start(["nginx", "-c", conf, "-p", tmp])
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/instances/I/token/{TOKEN}/status")
    return url


def exporter(procs, binary, tmp, name, gateways, interval, nginx, extra=()):
    port = free_port()
    path = os.path.join(tmp, f"{name}.yml")
    with open(path, "w") as f:
        f.write(f"global:\n  interval: {interval}\n  timeout: {interval}\n  max_concurrent_polls: 256\ngateways:\n")
        for i in range(gateways):
            f.write(f"  - name: gw-{i:05d}\n    provider: plugzapi\n    url: {nginx}\n    instance: I{i}\n    token: {TOKEN}\n")
    p = procs.start([binary, "--config.file", path, "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn", *extra])
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/-/healthy")
    return p, base


def wrk(url, seconds=10, threads=2, conns=16):
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw errors against {url}:\n{out}")
    return int(m.group(1))


def cpu_per_request(pid, url, seconds=10):
    wrk(url, 2)  # warm up connections and caches
    c0 = cpu_seconds(pid)
    n = wrk(url, seconds)
    return (cpu_seconds(pid) - c0) / n * 1e6, n


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/whatsapp_exporter"
    for tool in ("nginx", "wrk", "prometheus-blackbox-exporter"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install nginx-light wrk prometheus-blackbox-exporter")
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="wa-bench-")
    results = []
    try:
        nginx = start_nginx(procs, tmp)
        target = f"{nginx}/instances/I0/token/{TOKEN}/status"

        # 1. Background polling: 500 gateways, 1 s interval.
        p, base = exporter(procs, binary, tmp, "bg500", 500, "1s", nginx)
        time.sleep(3)
        polls0, c0 = metric_sum(get(f"{base}/metrics"), "whatsapp_polls_total"), cpu_seconds(p.pid)
        time.sleep(20)
        c1 = cpu_seconds(p.pid)
        polls1 = metric_sum(get(f"{base}/metrics"), "whatsapp_polls_total")
        bg_us = (c1 - c0) / (polls1 - polls0) * 1e6
        procs.stop(p)

        # 2. /probe per request, against blackbox_exporter probing the same URL.
        bb_port = free_port()
        bb_conf = os.path.join(tmp, "blackbox.yml")
        with open(bb_conf, "w") as f:
            f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      valid_status_codes: [200]\n")
        bb = procs.start(["prometheus-blackbox-exporter", f"--config.file={bb_conf}", f"--web.listen-address=127.0.0.1:{bb_port}"])
        wait_http(f"http://127.0.0.1:{bb_port}/-/healthy")
        bb_us, bb_n = cpu_per_request(bb.pid, f"http://127.0.0.1:{bb_port}/probe?module=http_2xx&target={target}")
        procs.stop(bb)
        p, base = exporter(procs, binary, tmp, "probe", 10, "1m", nginx, ["--no-background-polling"])
        ex_us, ex_n = cpu_per_request(p.pid, f"{base}/probe?target=gw-00000")
        procs.stop(p)
        # Each gateway probed once: every request is a poll.
        n_polling = 2000
        p, base = exporter(procs, binary, tmp, "probe-polls", n_polling, "1m", nginx, ["--no-background-polling"])
        get(f"{base}/probe?target=gw-00000")  # warm up
        c0 = cpu_seconds(p.pid)
        for i in range(1, n_polling):
            get(f"{base}/probe?target=gw-{i:05d}")
        polls = metric_sum(get(f"{base}/probe?target=gw-{n_polling - 1:05d}"), "whatsapp_polls_total")
        probe_poll_us = (cpu_seconds(p.pid) - c0) / (n_polling - 1) * 1e6
        procs.stop(p)

        # 3. 10,000 gateways at a 10 s interval.
        p, base = exporter(procs, binary, tmp, "10k", 10_000, "10s", nginx)
        start = time.time()
        polled = 0
        while time.time() - start < 15:
            polled = len(re.findall(r"(?m)^whatsapp_up\{[^}]*\} 1$", get(f"{base}/metrics", gz=True)))
            if polled == 10_000:
                break
            time.sleep(0.5)
        first_round = time.time() - start
        renders = []
        for _ in range(25):
            # Timed as Prometheus sees it: request to last compressed byte, not decompressed here.
            req = urllib.request.Request(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            renders.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.2)
        rss10k = rss_mib(p.pid)
        procs.stop(p)

        # 4. Idle: 5 gateways at 60 s.
        p, base = exporter(procs, binary, tmp, "idle", 5, "60s", nginx)
        time.sleep(70)  # every gateway has had its first poll
        c0 = cpu_seconds(p.pid)
        time.sleep(20)
        idle_cpu_ms = (cpu_seconds(p.pid) - c0) * 1000
        idle_rss = rss_mib(p.pid)
        procs.stop(p)

        results = [
            ("background polling, CPU per poll (500 gateways at 1 s)", f"{bg_us:.1f} µs", "target <= 50 µs",
             f"ratio {bg_us / bb_us:.2f} of blackbox_exporter's CPU per probe"),
            ("/probe, CPU per request (wrk)", f"{ex_us:.0f} µs ({ex_n} requests)", f"blackbox_exporter: {bb_us:.0f} µs ({bb_n} requests)",
             f"ratio {ex_us / bb_us:.2f} (target <= 0.20)"),
            ("/probe that calls its gateway, CPU per request", f"{probe_poll_us:.0f} µs",
             f"blackbox_exporter: {bb_us:.0f} µs", f"ratio {probe_poll_us / bb_us:.2f}; {polls:.0f} poll of the last"),
            ("10,000 gateways: all polled after", f"{first_round:.1f} s", "interval 10 s", f"{polled} of 10000 gateways"),
            ("10,000 gateways: /metrics with gzip, median", f"{statistics.median(renders):.1f} ms", "target <= 50 ms",
             f"p90 {sorted(renders)[int(len(renders) * 0.9)]:.1f} ms, max {max(renders):.1f} ms"),
            ("10,000 gateways: RSS", f"{rss10k:.1f} MiB", "target <= 64 MiB", ""),
            ("idle (5 gateways at 60 s): CPU in 20 s between polls", f"{idle_cpu_ms:.0f} ms", "target ~0", ""),
            ("idle: RSS", f"{idle_rss:.1f} MiB", "target < 16 MiB", ""),
        ]
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, kernel {os.uname().release}")
    for name, value, target, note in results:
        print(f"{name:58} {value:>24}   {target:32} {note}")


if __name__ == "__main__":
    main()
