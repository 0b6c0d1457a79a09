#!/usr/bin/env python3
"""Discovery at scale: 10,000 Evolution API instances over 20 servers, against the exporter.

Starts a mock of 20 Evolution API servers on 127.0.0.1 (one HTTP server, one path prefix per
server), each listing 500 instances from `GET /instance/fetchInstances` in the row shape of
Evolution API 2 (settings and counts included, about 1 KiB a row; every listing flips the state of
a few instances, so flaps are counted too), and the exporter (release build) with 20 gateways
`instances: all` at a 10 s interval. It prints:

  1. when every one of the 10,000 instances is exported (from the start, start-up included);
  2. the requests the servers saw per interval (one per server: 20), over 6 intervals;
  3. the exporter's CPU per server poll (500 instances parsed, selected and rendered);
  4. /metrics with gzip: median, p90 and max over 25 scrapes, as Prometheus sees it (request to last
     compressed byte), while polls keep finishing; and the page's size;
  5. the exporter's RSS.

CPU is read from /proc/PID/stat. Everything listens on 127.0.0.1 only; the exporter is stopped by
its PID. Python 3 standard library only.

With --big-listing it measures instead one Evolution API server of about 60 MiB (some 45,000
instances, as a real server of that size lists them) served by a local mock in 64 KiB writes, with
the default max_instances (1,000), and 60 MiB of rows with only a name and a state (1.4 million
of them): the exporter's peak RSS (VmHWM) over three polls, against a baseline run whose listing
has 1,000 instances; the poll's duration; and /metrics while polls run.

Usage: python3 benches/discovery.py [path/to/whatsapp_exporter] [--big-listing]
       (default target/release/whatsapp_exporter)
"""

import http.server
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = 20
PER_SERVER = 500
INTERVAL = 10
KEY = "bench-global-key"


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


def get(url, timeout=30):
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        if r.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        return body.decode()


def row(server, i, state):
    iid = f"cm2inst{server:02d}{i:016d}"
    return {
        "id": iid, "name": f"instance-{i:03d}", "connectionStatus": state,
        "ownerJid": f"55119{server:02d}{i:06d}@s.whatsapp.net", "profileName": "Loja",
        "profilePicUrl": None, "integration": "WHATSAPP-BAILEYS", "number": None, "businessId": None,
        "token": f"B3844804-481D-47A4-B69C-{server:02d}{i:010d}", "clientName": "evolution_exchange",
        "disconnectionReasonCode": None, "disconnectionObject": None, "disconnectionAt": None,
        "createdAt": "2025-10-01T12:00:00.000Z", "updatedAt": "2025-10-21T14:40:39.123Z",
        "Chatwoot": None, "Proxy": None, "Rabbitmq": None, "Nats": None, "Sqs": None, "Websocket": None,
        "Setting": {"id": f"set{iid}", "rejectCall": False, "msgCall": "", "groupsIgnore": False,
                    "alwaysOnline": False, "readMessages": False, "readStatus": False,
                    "syncFullHistory": False, "wavoipToken": "", "createdAt": "2025-10-01T12:00:00.000Z",
                    "updatedAt": "2025-10-01T12:00:00.000Z", "instanceId": iid},
        "_count": {"Message": 120, "Contact": 30, "Chat": 12},
    }


def listings(server):
    """Two listings of a server that differ in the state of every 50th instance."""
    out = []
    for flip in (0, 1):
        rows = []
        for i in range(PER_SERVER):
            state = "close" if i % 10 == 0 else "open"
            if i % 50 == 1 and flip:
                state = "connecting"
            rows.append(row(server, i, state))
        out.append(json.dumps(rows).encode())
    return out


class Mock:
    def __init__(self):
        self.bodies = {f"/s{s:02d}/instance/fetchInstances": listings(s) for s in range(SERVERS)}
        self.hits = {p: 0 for p in self.bodies}
        self.lock = threading.Lock()
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                bodies = mock.bodies.get(self.path)
                if bodies is None or self.headers.get("apikey") != KEY:
                    self.send_response(404 if bodies is None else 401)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                with mock.lock:
                    n = mock.hits[self.path]
                    mock.hits[self.path] = n + 1
                body = bodies[n % 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def total(self):
        with self.lock:
            return sum(self.hits.values())

    def per_server(self):
        with self.lock:
            return sorted(self.hits.values())


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


BIG_MIB = 60


def big_listings():
    """A listing of 1,000 instances and one of about BIG_MIB MiB, as bytes."""
    small = json.dumps([row(0, i, "open" if i % 3 else "close") for i in range(1000)]).encode()
    parts, size, i = [], 2, 0
    while size < BIG_MIB << 20:
        part = json.dumps(row(1, i, "open" if i % 3 else "close")).encode()
        parts.append(part)
        size += len(part) + 1
        i += 1
    return small, b"[" + b",".join(parts) + b"]", i


def tiny_listing():
    """About BIG_MIB MiB of rows with only a name and a state (WAHA's sessions are about this
    small): over a million rows, the worst case for a listing read whole."""
    part = '{{"name":"session-{:07d}","status":"{}"}}'
    rows = [part.format(i, "WORKING" if i % 3 else "STOPPED") for i in range((BIG_MIB << 20) // 46)]
    return ("[" + ",".join(rows) + "]").encode(), len(rows)


class ListingMock:
    """One path per listing, each sent with its length in 64 KiB writes."""

    def __init__(self, bodies):
        self.hits = {p: 0 for p in bodies}
        self.lock = threading.Lock()
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = bodies.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                view = memoryview(body)
                try:
                    for at in range(0, len(body), 64 << 10):
                        self.wfile.write(view[at:at + (64 << 10)])
                except OSError:
                    return
                with mock.lock:
                    mock.hits[self.path] += 1

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def served(self, path):
        with self.lock:
            return self.hits[path]


def run_listing(binary, mock, path, polls=3):
    """Runs the exporter against one listing for `polls` polls; its peak RSS, poll duration,
    scrape times and what it exported."""
    tmp = tempfile.mkdtemp(prefix="wa-listing-")
    proc = None
    try:
        cfg = os.path.join(tmp, "listing.yml")
        with open(cfg, "w") as f:
            f.write(f"global:\n  interval: {INTERVAL}s\n  timeout: {INTERVAL}s\ngateways:\n"
                    f"  - name: evo\n    provider: evolution\n    url: http://127.0.0.1:{mock.port}{path}\n"
                    f"    token: {KEY}\n    instances: all\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
                                 "--log.level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        want = f"{path}/instance/fetchInstances"
        scrapes, text = [], ""
        deadline = time.time() + (polls + 2) * INTERVAL
        while mock.served(want) < polls and time.time() < deadline and proc.poll() is None:
            t = time.perf_counter()
            try:
                text = get(f"{base}/metrics")
                scrapes.append((time.perf_counter() - t) * 1000)
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(1)
        text = get(f"{base}/metrics")
        hwm = status_kib(proc.pid, "VmHWM") / 1024
        rss = status_kib(proc.pid, "VmRSS") / 1024

        def value(name):
            for line in text.splitlines():
                if line.startswith(name + '{gateway="evo",'):
                    return float(line.rsplit(" ", 1)[1])
            return None

        return {
            "hwm": hwm, "rss": rss, "polls": mock.served(want),
            "duration": value("whatsapp_poll_duration_seconds"),
            "exported": value("whatsapp_discovered_instances"),
            "overflow": value("whatsapp_discovery_overflow_total"),
            "up": value("whatsapp_up"),
            "scrape_max": max(scrapes) if scrapes else None,
            "scrape_median": statistics.median(scrapes) if scrapes else None,
            "leak": "B3844804" in text or "@s.whatsapp.net" in text,
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def big_listing(binary):
    small, big, rows = big_listings()
    tiny, tiny_rows = tiny_listing()
    mock = ListingMock({"/small/instance/fetchInstances": small, "/big/instance/fetchInstances": big,
                        "/tiny/instance/fetchInstances": tiny})
    try:
        base = run_listing(binary, mock, "/small")
        big_run = run_listing(binary, mock, "/big")
        tiny_run = run_listing(binary, mock, "/tiny")
    finally:
        mock.server.shutdown()
    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, kernel {os.uname().release}")
    print(f"one Evolution API server: baseline listing {len(small) / 1024:.0f} KiB (1,000 instances), "
          f"big listing {len(big) / 1048576:.1f} MiB ({rows} instances), tiny rows {len(tiny) / 1048576:.1f} MiB "
          f"({tiny_rows} instances), max_instances 1000, interval {INTERVAL} s")
    for name, r in [("baseline", base), ("big listing", big_run), ("tiny rows", tiny_run)]:
        dur = f"{r['duration'] * 1000:.0f} ms" if r["duration"] is not None else "-"
        scrape = (f"median {r['scrape_median']:.1f} ms, max {r['scrape_max']:.1f} ms"
                  if r["scrape_median"] is not None else "-")
        print(f"{name:12} polls {r['polls']}, up {r['up']}, exported {r['exported']}, overflow {r['overflow']}; "
              f"peak RSS {r['hwm']:.1f} MiB, RSS {r['rss']:.1f} MiB; last poll {dur}; /metrics {scrape}")
    print(f"peak RSS over the baseline: big listing {big_run['hwm'] - base['hwm']:.1f} MiB, "
          f"tiny rows {tiny_run['hwm'] - base['hwm']:.1f} MiB")
    if big_run["leak"] or big_run["up"] != 1.0:
        sys.exit(1)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    binary = args[0] if args else "target/release/whatsapp_exporter"
    if "--big-listing" in sys.argv:
        big_listing(binary)
        return
    mock = Mock()
    size = len(next(iter(mock.bodies.values()))[0])
    tmp = tempfile.mkdtemp(prefix="wa-discovery-")
    proc = None
    try:
        path = os.path.join(tmp, "discovery.yml")
        with open(path, "w") as f:
            f.write(f"global:\n  interval: {INTERVAL}s\n  timeout: {INTERVAL}s\ngateways:\n")
            for s in range(SERVERS):
                f.write(f"  - name: evo-{s:02d}\n    provider: evolution\n    url: http://127.0.0.1:{mock.port}/s{s:02d}\n"
                        f"    token: {KEY}\n    instances: all\n")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        start = time.time()
        proc = subprocess.Popen([binary, "--config.file", path, "--web.listen-address", f"127.0.0.1:{port}",
                                 "--log.level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        exported = 0
        while time.time() - start < 2 * INTERVAL:
            try:
                text = get(f"{base}/metrics")
                exported = sum(1 for line in text.splitlines() if line.startswith("whatsapp_connected{"))
                if exported == SERVERS * PER_SERVER:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        all_exported = time.time() - start

        # Requests and CPU over whole intervals, from the end of the first one.
        time.sleep(max(0.0, INTERVAL - (time.time() - start)))
        rounds = 6
        r0, c0, t0 = mock.total(), cpu_seconds(proc.pid), time.time()
        time.sleep(rounds * INTERVAL)
        r1, c1, t1 = mock.total(), cpu_seconds(proc.pid), time.time()
        per_interval = (r1 - r0) / ((t1 - t0) / INTERVAL)
        cpu_per_poll_ms = (c1 - c0) / max(1, r1 - r0) * 1000

        renders, page = [], 0
        for _ in range(25):
            req = urllib.request.Request(f"{base}/metrics", headers={"Accept-Encoding": "gzip"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as r:
                page = len(r.read())
            renders.append((time.perf_counter() - t) * 1000)
            time.sleep(0.2)
        plain = len(get(f"{base}/metrics").encode())
        text = get(f"{base}/metrics")
        flaps = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("whatsapp_connected_changes_total{"))
        rss = rss_mib(proc.pid)
        secret_shown = "B3844804" in text or "@s.whatsapp.net" in text
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        mock.server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"machine: {os.cpu_count()} cores, {os.uname().machine}, kernel {os.uname().release}")
    print(f"{SERVERS} Evolution API servers x {PER_SERVER} instances, interval {INTERVAL} s, listing {size / 1024:.0f} KiB per server")
    results = [
        ("all 10,000 instances exported after", f"{all_exported:.1f} s", f"{exported} of {SERVERS * PER_SERVER}; within the first interval ({INTERVAL} s)"),
        ("requests per interval", f"{per_interval:.1f}", f"one per server ({SERVERS}); per server over {rounds} intervals: {mock.per_server()[0]}..{mock.per_server()[-1]}"),
        ("CPU per server poll (500 instances)", f"{cpu_per_poll_ms:.2f} ms", f"{cpu_per_poll_ms * 1000 / PER_SERVER:.1f} µs per instance"),
        ("/metrics with gzip, median", f"{statistics.median(renders):.1f} ms",
         f"p90 {sorted(renders)[int(len(renders) * 0.9)]:.1f} ms, max {max(renders):.1f} ms (budget <= 50 ms); {page / 1024:.0f} KiB gzip, {plain / 1024 / 1024:.1f} MiB plain"),
        ("RSS", f"{rss:.1f} MiB", "budget <= 64 MiB"),
        ("flaps counted", f"{flaps:.0f}", "every 50th instance flips at every poll"),
        ("token or phone number in /metrics", "yes" if secret_shown else "no", "must be no"),
    ]
    for name, value, note in results:
        print(f"{name:40} {value:>12}   {note}")
    if secret_shown or exported != SERVERS * PER_SERVER:
        sys.exit(1)


if __name__ == "__main__":
    main()
