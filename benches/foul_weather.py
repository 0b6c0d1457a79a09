#!/usr/bin/env python3
"""Foul weather: attacks and outages against the exporter, each with a measured figure and a bar.

Every scenario starts its own mock gateways (asyncio, in a child process, on 127.0.0.1) and its own
exporter from a temporary configuration, drives it for a bounded time with a bounded number of
connections, prints one line

    SCENARIO: PASS|FAIL  measured: ...  |  bar: ...

and exits 1 when the bar is not met. Only processes this script started are stopped, by PID.

Scenarios:
  half-dead     10,000 gateways at 10 s, half on a gateway that accepts and never answers
  probe-flood   50 connections hammering /probe for a healthy, a 429-ing and a WABA login gateway
  connections   1,100 silent or slow connections, then 25 scrapes (plain, TLS, basic auth, ulimit 1024)
  reload-storm  10,000 gateways, 16 POST /-/reload per second, polling rate before and during
  bcrypt-flood  600 connections with wrong passwords; scrape latency, poll rate, unknown vs known user
  slow-huge     200 gateways trickling a 4 MiB answer; the exporter's RSS
  log-flood     bad PlugChat webhooks with the right secret, as fast as possible; bytes logged
  all           every scenario in turn

Usage: python3 benches/foul_weather.py SCENARIO [--binary target/release/whatsapp_exporter]
Needs Python 3 (stdlib), openssl (connections, TLS) and htpasswd from apache2-utils or the
`bcrypt` Python module (connections, bcrypt-flood).
"""

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
STATUS_JSON = b'{"connected":true,"session":true,"smartphoneConnected":true}'
TOKEN = "fw-token-7f3a"
WABA_USER, WABA_PASSWORD = "monitor", "fw-waba-password"
PLUGCHAT_SECRET = "fw-plugchat-secret-0123456789abcdef"
BASIC_USER, BASIC_PASSWORD = "prometheus", "fw-basic-password"
MIB = 1 << 20


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client on asyncio streams: scrapes, probes, reloads and floods all use it.
# ---------------------------------------------------------------------------------------------

class Conn:
    """One keep-alive connection; `request` reconnects when the server closed it."""

    def __init__(self, port, tls=None):
        self.port, self.tls = port, tls
        self.reader = self.writer = None

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=self.tls,
                                                                 server_hostname="127.0.0.1" if self.tls else None)

    def close(self):
        if self.writer:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, path, headers=None, body=b""):
        if self.writer is None:
            await self.connect()
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        data = await self.reader.readexactly(n) if n else b""
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data


async def fetch(port, method, path, headers=None, body=b"", timeout=10.0, tls=None, errors=None):
    """One request on a fresh connection: (status, body, seconds); status None on failure, whose
    kind (connect or request, and the exception) is appended to `errors` when given."""
    c = Conn(port, tls)
    t0 = time.perf_counter()
    stage = "connect"
    try:
        await asyncio.wait_for(c.connect(), timeout)
        stage = "request"
        left = max(0.001, timeout - (time.perf_counter() - t0))
        status, _, data = await asyncio.wait_for(c.request(method, path, headers, body), left)
        return status, data, time.perf_counter() - t0
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ValueError, IndexError, ssl.SSLError) as e:
        if errors is not None:
            errors.append(f"{stage} {type(e).__name__} after {time.perf_counter() - t0:.2f} s")
        return None, b"", time.perf_counter() - t0
    finally:
        c.close()


async def flood(port, make_request, conns, seconds, tls=None):
    """`conns` keep-alive connections sending `make_request(conn_no, n)` = (method, path, headers,
    body) back to back for `seconds`; returns {status: count} (None: connection errors)."""
    counts = {}
    deadline = time.monotonic() + seconds

    async def one(i):
        c, n = Conn(port, tls), 0
        while time.monotonic() < deadline:
            method, path, headers, body = make_request(i, n)
            n += 1
            try:
                left = max(0.1, deadline - time.monotonic())
                status, _, _ = await asyncio.wait_for(c.request(method, path, headers, body), left)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError,
                    ssl.SSLError):
                status = None
                c.close()
                await asyncio.sleep(0.05)
            counts[status] = counts.get(status, 0) + 1
        c.close()

    await asyncio.gather(*(one(i) for i in range(conns)))
    return counts


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def count_series(text, name):
    return sum(1 for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


# ---------------------------------------------------------------------------------------------
# Mock gateways: `foul_weather.py _mock KIND...` serves one port per kind, prints the ports as a
# JSON list, and stops when its parent closes stdin (or after --max-seconds). Every mock answers
# GET /__stats with its counters.
# ---------------------------------------------------------------------------------------------

WABA_SUPPORT = (b'{"support":{"db_engine":"MYSQL","expire_timestamp":"2030-09-27T14:26:07",'
                b'"free_space_data":14269902848,"multi_connect":false,"os_name":"ubuntu-x86_64",'
                b'"os_version":"16.04","socket_conn":"UP","version":"v2.41.3"},'
                b'"meta":{"api_status":"stable","version":"2.41.3"}}')
WABA_HEALTH = b'{"health":{"gateway_status":"connected"},"meta":{"api_status":"stable"}}'
TRICKLE_CHUNK = 64 * 1024
TRICKLE_TOTAL = 4 * MIB  # exactly the exporter's documented cap: read in full, not refused


def trickle_body():
    head = b'{"connected":true,"session":true,"smartphoneConnected":true,"pad":"'
    tail = b'"}'
    return head + b"x" * (TRICKLE_TOTAL - len(head) - len(tail)) + tail


class MockServer:
    PATH_RE = re.compile(r"^/instances/([^/]+)/token/[^/]+/status$")

    def __init__(self, kind):
        self.kind = kind
        self.hits = 0
        self.ids = set()
        self.paths = {}
        self.open = 0
        self.body = trickle_body() if kind == "trickle" else None

    def stats(self):
        return {"kind": self.kind, "hits": self.hits, "ids": len(self.ids), "paths": self.paths, "open": self.open}

    async def handle(self, reader, writer):
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split()[:2]
                n = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        n = int(line.split(":", 1)[1])
                if n:
                    await reader.readexactly(n)
                path = target.split("?")[0]
                if path == "/__stats":
                    await self.send(writer, 200, json.dumps(self.stats()).encode())
                    continue
                self.hits += 1
                key = f"{method} {path}" if self.kind == "waba" else method
                self.paths[key] = self.paths.get(key, 0) + 1
                m = self.PATH_RE.match(path)
                if m:
                    self.ids.add(m.group(1))
                if self.kind == "silent":
                    await reader.read()  # holds the connection until the client gives up
                    return
                await self.answer(writer, method, path)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def answer(self, writer, method, path):
        if self.kind == "status":
            await self.send(writer, 200, STATUS_JSON)
        elif self.kind == "429":
            await self.send(writer, 429, b'{"error":"too many requests"}', {"Retry-After": "3600"})
        elif self.kind == "waba":
            if method == "POST" and path == "/v1/users/login":
                expires = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 7 * 86400))
                body = json.dumps({"users": [{"token": "fw-issued-token", "expires_after": expires + "+00:00"}],
                                   "meta": {"api_status": "stable"}}).encode()
                await self.send(writer, 200, body)
            elif path == "/v1/support":
                await self.send(writer, 200, WABA_SUPPORT)
            elif path == "/v1/health":
                await self.send(writer, 200, WABA_HEALTH)
            else:
                await self.send(writer, 404, b'{"errors":[{"code":404,"title":"Not found"}]}')
        elif self.kind == "trickle":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n\r\n".encode())
            for i in range(0, len(self.body), TRICKLE_CHUNK):
                writer.write(self.body[i:i + TRICKLE_CHUNK])
                await writer.drain()
                await asyncio.sleep(0.1)

    @staticmethod
    async def send(writer, status, body, headers=None):
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body)
        await writer.drain()


async def mock_main(kinds, max_seconds):
    raise_fd_limit()
    servers = []
    for kind in kinds:
        m = MockServer(kind)
        srv = await asyncio.start_server(m.handle, "127.0.0.1", 0, backlog=4096, limit=1 << 20)
        servers.append(srv)
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=max_seconds)
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# Processes this script starts, and stops by PID.
# ---------------------------------------------------------------------------------------------

STARTED = []


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    while STARTED:
        stop(STARTED.pop())


class Mocks:
    """The mock gateways of one scenario, in a child process: `.port(kind)`, `.stats(kind)`."""

    def __init__(self, *kinds, max_seconds=600):
        self.p = subprocess.Popen([sys.executable, HERE, "_mock", "--max-seconds", str(max_seconds), *kinds],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        STARTED.append(self.p)
        self.ports = dict(zip(kinds, json.loads(self.p.stdout.readline())))

    def url(self, kind):
        return f"http://127.0.0.1:{self.ports[kind]}"

    async def stats(self, kind):
        status, body, _ = await fetch(self.ports[kind], "GET", "/__stats", timeout=10)
        if status != 200:
            raise SystemExit(f"mock {kind} did not answer its stats")
        return json.loads(body)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plugzapi(name, url, instance, extra=""):
    return f"  - name: {name}\n    provider: plugzapi\n    url: {url}\n    instance: {instance}\n    token: {TOKEN}\n{extra}"


class Exporter:
    """The exporter, on 127.0.0.1 with a temporary configuration; stderr goes to `log_path`."""

    def __init__(self, binary, tmp, gateways, global_=None, webhooks="", web=None, args=(),
                 nofile=None, log_level="warn"):
        self.tmp = tmp
        self.config = os.path.join(tmp, "exporter.yml")
        self.write_config(gateways, global_, webhooks)
        self.port = free_port()
        self.tls = None
        self.auth = {}
        cmd = [binary, "--config.file", self.config, "--web.listen-address", f"127.0.0.1:{self.port}",
               "--log.level", log_level, *args]
        if web:
            path = os.path.join(tmp, "web.yml")
            with open(path, "w") as f:
                f.write(web)
            cmd += ["--web.config.file", path]
            if "tls_server_config" in web:
                self.tls = ssl.create_default_context()
                self.tls.check_hostname = False
                self.tls.verify_mode = ssl.CERT_NONE  # our own self-signed certificate
            if "basic_auth_users" in web:
                self.auth = {"Authorization": basic(BASIC_USER, BASIC_PASSWORD)}
        self.log_path = os.path.join(tmp, "exporter.log")
        self.log = open(self.log_path, "wb")

        def limits():
            if nofile:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

        self.started = time.monotonic()
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, preexec_fn=limits)
        STARTED.append(self.p)

    def write_config(self, gateways, global_=None, webhooks=""):
        with open(self.config, "w") as f:
            if global_:
                f.write("global:\n" + "".join(f"  {k}: {v}\n" for k, v in global_.items()))
            if gateways:
                f.write("gateways:\n" + "".join(gateways))
            f.write(webhooks)

    @property
    def pid(self):
        return self.p.pid

    async def get(self, path, timeout=10.0, headers=None, errors=None):
        return await fetch(self.port, "GET", path, {**self.auth, **(headers or {})}, timeout=timeout, tls=self.tls,
                           errors=errors)

    async def wait_ready(self, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise SystemExit(f"the exporter exited with {self.p.returncode}: {self.log_tail()}")
            status, _, _ = await self.get("/-/healthy", timeout=2)
            if status == 200:
                return
            await asyncio.sleep(0.05)
        raise SystemExit("the exporter did not become healthy")

    async def metrics(self, timeout=30.0):
        status, body, _ = await self.get("/metrics", timeout=timeout)
        return body.decode() if status == 200 else ""

    def log_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def memory_kib(self):
        """(VmRSS, VmHWM) in KiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
        return out.get("VmRSS", 0), out.get("VmHWM", 0)


def result(name, ok, measured, bar):
    print(f"{name}: {'PASS' if ok else 'FAIL'}  measured: {measured}  |  bar: {bar}", flush=True)
    return ok


async def hit_rate(mocks, kind, seconds):
    a = (await mocks.stats(kind))["hits"]
    await asyncio.sleep(seconds)
    b = (await mocks.stats(kind))["hits"]
    return (b - a) / seconds


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------

async def half_dead(binary, tmp):
    """Half of 10,000 gateways hang: the healthy half must still be polled, and every gateway
    must have a whatsapp_up series from the first scrape."""
    n = 10_000
    mocks = Mocks("status", "silent")
    gws = [plugzapi(f"gw-{i:05d}", mocks.url("status" if i % 2 == 0 else "silent"), f"I{i}") for i in range(n)]
    ex = Exporter(binary, tmp, gws, {"interval": "10s", "timeout": "5s"})
    await ex.wait_ready()
    first_up = count_series(await ex.metrics(), "whatsapp_up")
    seen = {}
    for at in (10, 20, 28):
        await asyncio.sleep(max(0.0, ex.started + at - time.monotonic()))
        seen[at] = (await mocks.stats("status"))["ids"]
    healthy = n // 2
    ok = seen[20] >= healthy and first_up >= n
    return result("half-dead", ok,
                  f"healthy gateways polled {seen[10]} at 10 s, {seen[20]} at 20 s, {seen[28]} at 28 s of {healthy}; "
                  f"whatsapp_up series at the first scrape {first_up} of {n}",
                  f"all {healthy} healthy polled within 20 s (two intervals), {n} whatsapp_up series at the first scrape")


async def probe_flood(binary, tmp):
    """/probe hammered: a gateway must not be called more than once per interval (60 s) or
    back-off, and a WABA login must not follow the probe rate."""
    mocks = Mocks("status", "429", "waba")
    gws = [plugzapi("healthy", mocks.url("status"), "I1"),
           plugzapi("limited", mocks.url("429"), "I2"),
           f"  - name: onprem\n    provider: waba\n    url: {mocks.url('waba')}\n    auth: login\n"
           f"    username: {WABA_USER}\n    password: {WABA_PASSWORD}\n"]
    # Polls only through /probe, so that every gateway call counted comes from the flood.
    ex = Exporter(binary, tmp, gws, {"interval": "60s", "timeout": "5s"}, args=["--no-background-polling"])
    await ex.wait_ready()
    parts, ok = [], True
    for target, kind in (("healthy", "status"), ("limited", "429"), ("onprem", "waba")):
        before = await mocks.stats(kind)
        counts = await flood(ex.port, lambda i, k, t=target: ("GET", f"/probe?target={t}", {}, b""), 50, 10)
        after = await mocks.stats(kind)
        probes = sum(counts.values())
        if kind == "waba":
            logins = after["paths"].get("POST /v1/users/login", 0) - before["paths"].get("POST /v1/users/login", 0)
            polls = after["paths"].get("GET /v1/support", 0) - before["paths"].get("GET /v1/support", 0)
            ok &= logins <= 1 and polls <= 1
            parts.append(f"onprem: {probes} probes -> {logins} logins, {polls} polls (GET /v1/support)")
        else:
            calls = after["hits"] - before["hits"]
            ok &= calls <= 1
            parts.append(f"{target}: {probes} probes -> {calls} gateway calls")
    return result("probe-flood", ok, "; ".join(parts) + " in 10 s each, 50 connections",
                  "at most 1 gateway call per gateway per 60 s interval or Retry-After (3600 s); at most 1 login")


def make_cert(tmp):
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def bcrypt_hash(password, cost=10):
    try:
        import bcrypt  # noqa: PLC0415 - optional
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    except ImportError:
        if not shutil.which("htpasswd"):
            raise SystemExit("needs htpasswd (apt-get install apache2-utils) or the bcrypt Python module")
        out = subprocess.run(["htpasswd", "-nbBC", str(cost), "u", password], check=True, capture_output=True, text=True)
        return out.stdout.strip().split(":", 1)[1]


async def hold_connections(port, count, seconds, tls_bytes):
    """`count` connections, half silent, half sending one byte every 3 s, each reopened a second
    after the server closes it, for `seconds`. Returns how many times they were (re)opened."""
    slow = (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" if tls_bytes
            else b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000)
    opened = [0]
    deadline = time.monotonic() + seconds

    async def one(i):
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
                continue
            opened[0] += 1
            try:
                k = 0
                while time.monotonic() < deadline:
                    if i % 2 and k < len(slow):
                        writer.write(slow[k:k + 1])
                        await writer.drain()
                        k += 1
                    try:
                        if await asyncio.wait_for(reader.read(4096), 3) == b"":
                            break  # closed by the exporter: open another
                    except asyncio.TimeoutError:
                        pass
            except OSError:
                pass
            finally:
                writer.close()
            await asyncio.sleep(1)  # reopen after a pause: an attacker keeping 1,100 open, not a connect flood

    await asyncio.gather(*(one(i) for i in range(count)))
    return opened[0]


async def connections(binary, tmp, variants):
    """1,100 silent or slow connections, then 25 scrapes with a 10 s timeout, per variant."""
    cert, key = make_cert(tmp)
    hashed = bcrypt_hash(BASIC_PASSWORD)
    webs = {"plain": None,
            "tls": f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n",
            "basic-auth": f"basic_auth_users:\n  {BASIC_USER}: '{hashed}'\n",
            "ulimit-1024": None}
    all_ok, parts = True, []
    for variant in variants:
        sub = os.path.join(tmp, variant)
        os.makedirs(sub)
        mocks = Mocks("status")
        gws = [plugzapi(f"gw-{i}", mocks.url("status"), f"I{i}") for i in range(10)]
        ex = Exporter(binary, sub, gws, {"interval": "1s", "timeout": "900ms"}, web=webs[variant],
                      nofile=1024 if variant == "ulimit-1024" else None)
        await ex.wait_ready()
        holder = asyncio.ensure_future(hold_connections(ex.port, 1100, 25, variant == "tls"))
        await asyncio.sleep(3)  # let them connect

        async def scrape(i):
            await asyncio.sleep(i * 0.4)
            status, body, _ = await ex.get("/metrics", timeout=10)
            return status == 200 and b"whatsapp_up{" in body

        async def fds():
            seen = []
            for _ in range(20):
                seen.append(len(os.listdir(f"/proc/{ex.pid}/fd")))
                await asyncio.sleep(0.5)
            return seen

        oks, seen = await asyncio.gather(asyncio.gather(*(scrape(i) for i in range(25))), fds())
        opened = await holder
        good = sum(oks)
        all_ok &= good == 25
        parts.append(f"{variant} {good}/25 (exporter fds {min(seen)}-{max(seen)}, attack connections opened {opened})")
        stop(ex.p)
        stop(mocks.p)
    return result("connections", all_ok, "; ".join(parts), "25/25 scrapes answered in every variant")


async def reload_storm(binary, tmp):
    """10,000 gateways: the poll rate must stay above 90% while 16 reloads a second arrive."""
    n = 10_000
    mocks = Mocks("status")
    gws = [plugzapi(f"gw-{i:05d}", mocks.url("status"), f"I{i}") for i in range(n)]
    ex = Exporter(binary, tmp, gws, {"interval": "10s", "timeout": "5s"})
    await ex.wait_ready()
    await asyncio.sleep(max(0.0, ex.started + 12 - time.monotonic()))  # past the first round
    base = await hit_rate(mocks, "status", 10)
    answers = {}

    async def reload():
        status, _, _ = await fetch(ex.port, "POST", "/-/reload", timeout=30)
        answers[status] = answers.get(status, 0) + 1

    tasks = []
    a = (await mocks.stats("status"))["hits"]
    t0 = time.monotonic()
    for i in range(160):
        await asyncio.sleep(max(0.0, t0 + i / 16 - time.monotonic()))
        tasks.append(asyncio.ensure_future(reload()))
    await asyncio.sleep(max(0.0, t0 + 10 - time.monotonic()))
    b = (await mocks.stats("status"))["hits"]
    storm = (b - a) / (time.monotonic() - t0)
    await asyncio.wait(tasks, timeout=35)
    ratio = storm / base if base else 0
    return result("reload-storm", ratio >= 0.9,
                  f"polls/s {base:.0f} before, {storm:.0f} during 16 reloads/s ({ratio:.0%}); "
                  f"reload answers {dict(sorted(answers.items(), key=str))} of 160",
                  "polling during the storm >= 90% of before")


async def bcrypt_flood(binary, tmp):
    """Wrong passwords from 600 connections: polling and authenticated scrapes must go on, and an
    unknown user must cost as much as a known one."""
    hashed = bcrypt_hash(BASIC_PASSWORD)
    mocks = Mocks("status")
    gws = [plugzapi(f"gw-{i:03d}", mocks.url("status"), f"I{i}") for i in range(500)]
    ex = Exporter(binary, tmp, gws, {"interval": "1s", "timeout": "900ms"},
                  web=f"basic_auth_users:\n  {BASIC_USER}: '{hashed}'\n")
    await ex.wait_ready()
    await asyncio.sleep(3)

    async def timed(user, password):
        status, _, secs = await fetch(ex.port, "GET", "/metrics", {"Authorization": basic(user, password)},
                                      timeout=10)
        return secs

    unknown, known = [], []
    for i in range(50):  # a new password each time: no cached outcome
        unknown.append(await timed("nobody", f"wrong-u-{i}"))
        known.append(await timed(BASIC_USER, f"wrong-k-{i}"))
    mu, mk = statistics.median(unknown), statistics.median(known)

    failed = []

    async def scrapes(seconds):
        lat, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            status, _, secs = await ex.get("/metrics", timeout=10, errors=failed)
            if status not in (200, None):
                failed.append(f"HTTP {status}")
            lat.append(secs if status == 200 else 10.0)
            await asyncio.sleep(0.5)
        return lat

    before_rate, before_lat = await asyncio.gather(hit_rate(mocks, "status", 8), scrapes(8))
    wrong = lambda i, k: ("GET", "/metrics", {"Authorization": basic(BASIC_USER, f"flood-{i}-{k}")}, b"")
    counts, during_rate, during_lat = await asyncio.gather(flood(ex.port, wrong, 600, 10),
                                                           hit_rate(mocks, "status", 10), scrapes(10))
    ratio = during_rate / before_rate if before_rate else 0
    diff = abs(mu - mk) / mk if mk else 1
    med = statistics.median(during_lat)
    ok = ratio >= 0.9 and diff <= 0.2 and med < 1.0
    return result("bcrypt-flood", ok,
                  f"polls/s {before_rate:.0f} before, {during_rate:.0f} during ({ratio:.0%}); "
                  f"authenticated /metrics median {statistics.median(before_lat) * 1000:.0f} ms before, "
                  f"{med * 1000:.0f} ms (max {max(during_lat) * 1000:.0f} ms) during, "
                  f"{len(failed)} of {len(before_lat) + len(during_lat)} failed {failed or ''}; "
                  f"wrong password for unknown user {mu * 1000:.1f} ms vs known user {mk * 1000:.1f} ms (median of 50); "
                  f"flood answers {dict(sorted(counts.items(), key=str))}",
                  "polling >= 90%, unknown within 20% of known, authenticated median < 1 s")


async def slow_huge(binary, tmp):
    """200 gateways trickle a 4 MiB answer: RSS must stay under the deployed memory limit."""
    limit_mib = deployed_memory_limit_mib()
    mocks = Mocks("trickle")
    gws = [plugzapi(f"gw-{i:03d}", mocks.url("trickle"), f"I{i}") for i in range(200)]
    ex = Exporter(binary, tmp, gws, {"interval": "10s", "timeout": "9s"})
    await ex.wait_ready()
    peak_rss = 0
    end = time.monotonic() + 20
    while time.monotonic() < end and ex.p.poll() is None:
        rss, _ = ex.memory_kib()
        peak_rss = max(peak_rss, rss)
        await asyncio.sleep(0.1)
    if ex.p.poll() is not None:
        return result("slow-huge", False, f"the exporter exited with {ex.p.returncode}", f"RSS < {limit_mib} MiB")
    _, hwm = ex.memory_kib()
    polls = (await mocks.stats("trickle"))["hits"]
    return result("slow-huge", hwm / 1024 < limit_mib,
                  f"VmHWM {hwm / 1024:.0f} MiB, peak sampled VmRSS {peak_rss / 1024:.0f} MiB over 20 s "
                  f"({polls} answers of 4 MiB started, 64 KiB per 100 ms)",
                  f"RSS < {limit_mib} MiB (MemoryMax in deploy/systemd, memory limit in deploy/kubernetes)")


def deployed_memory_limit_mib():
    root = os.path.dirname(os.path.dirname(HERE))
    limits = []
    try:
        with open(os.path.join(root, "deploy/systemd/whatsapp_exporter.service")) as f:
            limits += [int(m) for m in re.findall(r"^MemoryMax=(\d+)M", f.read(), re.M)]
        with open(os.path.join(root, "deploy/kubernetes/deployment.yaml")) as f:
            text = f.read()
            limits += [int(m) for m in re.findall(r"limits:\s*\n\s*memory:\s*(\d+)Mi", text)]
    except OSError:
        pass
    return min(limits) if limits else 128


async def log_flood(binary, tmp):
    """A sender that knows the webhook secret posts bad payloads: the log must stay bounded, and
    say how many lines it dropped."""
    hooks = f"webhooks:\n  plugchat:\n    - account: store\n      secret: {PLUGCHAT_SECRET}\n"
    ex = Exporter(binary, tmp, [], webhooks=hooks, log_level="info")
    await ex.wait_ready()
    size0 = os.path.getsize(ex.log_path)
    path = f"/webhooks/plugchat/store/receiveMessage?secret={PLUGCHAT_SECRET}"
    bad = lambda i, k: ("POST", path, {"Content-Type": "application/json"}, b'{"phone": "55' + str(k).encode() + b'", broken')
    t0 = time.monotonic()
    counts = await flood(ex.port, bad, 16, 10)
    secs = time.monotonic() - t0
    await asyncio.sleep(0.5)
    size = os.path.getsize(ex.log_path) - size0
    with open(ex.log_path, "rb") as f:
        f.seek(size0)
        text = f.read().decode(errors="replace")
    lines = text.count("\n")
    metrics = await ex.metrics()
    dropped = re.findall(r"^(\S*log\S*drop\S*)\s+(\S+)$", metrics, re.M) or re.findall(r"dropped\S*=(\d+)", text)
    ok = size < MIB and bool(dropped)
    return result("log-flood", ok,
                  f"{size / MIB:.2f} MiB ({lines} lines) of log in {secs:.0f} s from {sum(counts.values())} bad webhooks "
                  f"(answers {dict(sorted(counts.items(), key=str))}); dropped lines reported: {dropped or 'none'}",
                  "under 1 MiB in 10 s, with a count of the lines dropped")


SCENARIOS = {
    "half-dead": half_dead,
    "probe-flood": probe_flood,
    "connections": connections,
    "reload-storm": reload_storm,
    "bcrypt-flood": bcrypt_flood,
    "slow-huge": slow_huge,
    "log-flood": log_flood,
}
VARIANTS = ["plain", "tls", "basic-auth", "ulimit-1024"]


def run(name, binary, variants):
    tmp = tempfile.mkdtemp(prefix=f"wa-foul-{name}-")
    try:
        fn = SCENARIOS[name]
        coro = fn(binary, tmp, variants) if name == "connections" else fn(binary, tmp)
        return asyncio.run(asyncio.wait_for(coro, 300))
    except asyncio.TimeoutError:
        return result(name, False, "the scenario did not finish within 300 s", "-")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_mock":
        ap = argparse.ArgumentParser()
        ap.add_argument("_mock")
        ap.add_argument("--max-seconds", type=float, default=600)
        ap.add_argument("kinds", nargs="+")
        a = ap.parse_args()
        asyncio.run(mock_main(a.kinds, a.max_seconds))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=[*SCENARIOS, "all"])
    ap.add_argument("--binary", default="target/release/whatsapp_exporter")
    ap.add_argument("--variant", action="append", choices=VARIANTS,
                    help="connections: only these variants (repeatable; default all)")
    a = ap.parse_args()
    if not os.access(a.binary, os.X_OK):
        raise SystemExit(f"{a.binary} is not an executable: cargo build --release")
    raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(1)))
    names = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    results = [run(n, a.binary, a.variant or VARIANTS) for n in names]
    if len(names) > 1:
        print(f"foul_weather: {sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
