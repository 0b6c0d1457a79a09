#!/usr/bin/env python3
"""Pushes that find their replica: a real nginx in front of three exporter replicas, configured by
`whatsapp_exporter webhooks-routes --format nginx`.

    python3 tests/e2e/webhook_routes_e2e.py [EXPORTER_BINARY] [GATEWAYS]
        (default target/release/whatsapp_exporter, 1000)

Needs nginx (Debian: nginx-light; set NGINX=/path for another). Python 3 standard library only;
everything listens on 127.0.0.1. It:
  1. writes a configuration of GATEWAYS Z-API gateways with webhooks.secret, all served by one mock
     status endpoint and polled once an hour,
  2. starts three release exporters with --shard i/3 on 127.0.0.1:P0, P1, P2, and nginx (a
     foreground process with its own prefix, pid and logs in a temporary directory) with the routing
     that `webhooks-routes --shards 3 --upstream http://127.0.0.1:P{shard}` prints,
  3. posts through nginx one SENT and one RECEIVED (delivered) Z-API callback per gateway, and for
     CLOUD Cloud API numbers of one Meta app a signed sent and delivered status each, on the app's
     one path (nginx answers from the app's owner and mirrors the push to the other replicas),
  4. checks on the three replicas' /metrics that every gateway's
     whatsapp_message_delivery_seconds_count is 1 on exactly its owner (Prometheus' hashmod of the
     name, as --shard), the Cloud API numbers' too, that no replica refused a push as unknown_gateway, and that a push sent
     straight to a replica that does not own the gateway is refused (404): the split the routing
     avoids.
It ends by itself within DEADLINE seconds and stops only the processes it started. Prints one line
per check, exits 1 if any failed.
"""
import concurrent.futures
import hashlib
import hmac
import http.client
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "routes-e2e-secret-0123456789"
SHARDS = 3
APP_SECRET = "routes-e2e-meta-app-secret"
CLOUD = 9
DEADLINE = 240
START = time.monotonic()


def left():
    return DEADLINE - (time.monotonic() - START)


def owner(name, n):
    return int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % n


class Status(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b'{"connected":true,"session":true,"error":"","smartphoneConnected":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def free_port_prefix():
    """A prefix P such that 127.0.0.1:P0 .. P{SHARDS-1} are free: {shard} then gives the port."""
    for p in range(3100, 6500, 37):
        socks = []
        try:
            for i in range(SHARDS):
                s = socket.socket()
                s.bind(("127.0.0.1", p * 10 + i))
                socks.append(s)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free ports")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target/release/whatsapp_exporter")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    nginx = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = tempfile.mkdtemp(prefix="webhook-routes-")
    procs = []
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    mock = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=mock.serve_forever, daemon=True).start()
    try:
        names = [f"gw-{k}" for k in range(count)]
        cfg = ["global:\n  interval: 1h\n  timeout: 5s\ngateways:\n"]
        for n in names:
            cfg.append(
                f"  - name: {n}\n    provider: zapi\n    url: http://127.0.0.1:{mock.server_port}\n"
                f"    instance: I\n    token: routes-e2e-token\n    webhooks:\n      secret: {SECRET}\n"
            )
        clouds = [f"cloud-{k}" for k in range(CLOUD)]
        for k, n in enumerate(clouds):
            cfg.append(
                f"  - name: {n}\n    provider: cloudapi\n    url: http://127.0.0.1:{mock.server_port}\n"
                f"    phone_number_id: \"10654035224{k:04d}\"\n    token: routes-e2e-token\n"
            )
        cfg.append(f"webhooks:\n  cloudapi:\n    - app: main\n      app_secret: {APP_SECRET}\n"
                   f"      verify_token: routes-e2e-verify-token\n")
        config = os.path.join(tmp, "config.yml")
        with open(config, "w") as f:
            f.write("".join(cfg))

        prefix = free_port_prefix()
        ports = [prefix * 10 + i for i in range(SHARDS)]
        nginx_port = free_port()
        routes = subprocess.run(
            [binary, "webhooks-routes", "--config.file", config, "--shards", str(SHARDS),
             "--upstream", f"http://127.0.0.1:{prefix}{{shard}}", "--format", "nginx",
             "--listen", f"127.0.0.1:{nginx_port}"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout
        check(routes.count("location = /webhooks/gw-") == count,
              f"webhooks-routes: one exact location per gateway ({count})")
        with open(os.path.join(tmp, "routes.conf"), "w") as f:
            f.write(routes)
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write(
                f"{user}daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
                f"error_log {tmp}/logs/error.log warn;\nevents {{ worker_connections 512; }}\n"
                f"http {{\n  access_log off;\n  client_body_temp_path {tmp}/client_body;\n"
                f"  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n"
                f"  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
                f"  include {tmp}/routes.conf;\n}}\n"
            )
        test = subprocess.run([nginx, "-t", "-p", tmp, "-c", f"{tmp}/nginx.conf"],
                              capture_output=True, text=True, timeout=30)
        check(test.returncode == 0, "nginx -t accepts the generated configuration")
        if test.returncode != 0:
            print(test.stderr)
            return 1

        for i, port in enumerate(ports):
            log = open(os.path.join(tmp, f"exporter-{i}.log"), "w")
            procs.append(subprocess.Popen(
                [binary, "--config.file", config, "--shard", f"{i}/{SHARDS}",
                 "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
                stdout=log, stderr=subprocess.STDOUT))
        ngx = subprocess.Popen([nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(ngx)
        for i, port in enumerate(ports):
            wait_ready(f"http://127.0.0.1:{port}/-/ready", procs[i])
        while left() > 0:
            try:
                socket.create_connection(("127.0.0.1", nginx_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)

        now_ms = int(time.time() * 1000)

        def push(batch):
            conn = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=30)
            codes = []
            for name in batch:
                for status, at in (("SENT", now_ms - 10_000), ("RECEIVED", now_ms - 6_000)):
                    body = ('{"type":"MessageStatusCallback","status":"%s","ids":["M-%s"],'
                            '"momment":%d,"phone":"5544999999999","instanceId":"i"}' % (status, name, at))
                    conn.request("POST", f"/webhooks/{name}?secret={SECRET}", body,
                                 {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    codes.append(r.status)
            conn.close()
            return codes

        batches = [names[k::8] for k in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = [c for cs in pool.map(push, batches) for c in cs]
        check(codes.count(200) == 2 * count,
              f"nginx answered 200 to all {2 * count} pushes (others: {sorted(set(codes) - {200})})")

        now = int(time.time())
        conn = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=30)
        cloud_codes = []
        for k in range(CLOUD):
            for status, at in (("sent", now - 10), ("delivered", now - 6)):
                body = ('{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":'
                        '[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
                        '"phone_number_id":"10654035224%04d"},"statuses":[{"id":"wamid.routes-%d","status":"%s",'
                        '"timestamp":"%d","recipient_id":"16505551234"}]},"field":"messages"}]}]}'
                        % (k, k, status, at)).encode()
                sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
                conn.request("POST", "/webhooks/cloudapi/main", body,
                             {"Content-Type": "application/json", "X-Hub-Signature-256": sig})
                r = conn.getresponse()
                r.read()
                cloud_codes.append(r.status)
        conn.close()
        check(cloud_codes == [200] * (2 * CLOUD), f"the Meta app's pushes answered 200: {cloud_codes}")
        # Mirrored copies are sent as the pushes are; give them a moment to land (bounded).
        time.sleep(1)

        counted = {}
        unknown = []
        pat = re.compile(r'^whatsapp_message_delivery_seconds_count\{[^}]*gateway="([^"]+)"[^}]*\} (\S+)$', re.M)
        rej = re.compile(r'^whatsapp_webhook_rejected_total\{[^}]*reason="unknown_gateway"[^}]*\} (\S+)$', re.M)
        for i, port in enumerate(ports):
            text = get(f"http://127.0.0.1:{port}/metrics")
            for gw, v in pat.findall(text):
                counted.setdefault(gw, []).append((i, float(v)))
            unknown.append(sum(float(v) for v in rej.findall(text)))
        wrong = [n for n in names if counted.get(n) != [(owner(n, SHARDS), 1.0)]]
        wrong_cloud = [n for n in clouds if counted.get(n) != [(owner(n, SHARDS), 1.0)]]
        check(not wrong_cloud, f"a Meta app's numbers: sent→delivered measured once, each on its owner "
                               f"({CLOUD - len(wrong_cloud)}/{CLOUD}; wrong: {[(n, counted.get(n), owner(n, SHARDS)) for n in wrong_cloud]}; "
                               f"{sum(owner(n, SHARDS) != owner('main', SHARDS) for n in clouds)} of them reached through the mirror)")
        check(not wrong, f"sent→delivered measured once, on its owner, for every gateway "
                         f"({count - len(wrong)}/{count}; first wrong: {wrong[:3]} {[counted.get(n) for n in wrong[:3]]})")
        check(unknown == [0.0] * SHARDS, f"no replica refused a push as unknown_gateway: {unknown}")
        shares = [sum(1 for n in names if owner(n, SHARDS) == i) for i in range(SHARDS)]
        print(f"     gateways per replica: {shares}")

        # Without the routing: a push to a replica that does not own the gateway is lost.
        name = names[0]
        other = ports[(owner(name, SHARDS) + 1) % SHARDS]
        req = urllib.request.Request(f"http://127.0.0.1:{other}/webhooks/{name}?secret={SECRET}",
                                     data=b'{"type":"MessageStatusCallback","status":"SENT","ids":["X"],"momment":1}',
                                     method="POST", headers={"Content-Type": "application/json"})
        try:
            code = urllib.request.urlopen(req, timeout=10).status
        except urllib.error.HTTPError as e:
            code = e.code
        check(code == 404, f"a replica that does not own {name} refuses its push ({code})")
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
    print(f"webhook routes: {len(failures)} failed" if failures else "webhook routes: all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
