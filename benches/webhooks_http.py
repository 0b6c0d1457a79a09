#!/usr/bin/env python3
"""Cloud API status webhooks over HTTP: what the exporter's receiver takes per CPU core.

Starts the exporter (release build) on 127.0.0.1 with one Meta app and one Cloud API gateway
(background polling off, so nothing but webhooks runs), and drives
`POST /webhooks/cloudapi/main` with wrk: signed bodies of 1, 10 and 100 statuses (sent and
delivered of distinct message ids, as Meta's documented status example with conversation and
pricing). For each batch size it prints the requests and statuses per second wrk saw, and the
exporter's own CPU (user + system from /proc), from which statuses per second per core follow.
Every answer must be 200: anything else fails the run.

Usage: python3 benches/webhooks_http.py [path/to/whatsapp_exporter]   (needs wrk:
apt-get install wrk). Everything started is stopped by PID.
"""

import hashlib
import hmac
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
APP_SECRET = "bench_app_secret_0123456789abcdef"
NUMBER = "106540352242922"
BODIES = 2000
DURATION = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def batch(first, n, status):
    statuses = ",".join(
        '{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMx%012d",'
        '"status":"%s","timestamp":"1750030073","recipient_id":"16505551234",'
        '"conversation":{"id":"72b14d6bd5407799e66f64d1b338e567","expiration_timestamp":"1750116480",'
        '"origin":{"type":"marketing"}},"pricing":{"billable":true,"pricing_model":"PMP",'
        '"type":"regular","category":"marketing"}}' % (i, status)
        for i in range(first, first + n)
    )
    return (
        '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":'
        '{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",'
        '"phone_number_id":"%s"},"statuses":[%s]},"field":"messages"}]}]}' % (NUMBER, statuses)
    )


def lua_script(path, n):
    bodies = []
    for i in range(BODIES):
        body = batch((i // 2) * n, n, "sent" if i % 2 == 0 else "delivered")
        sig = hmac.new(APP_SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        bodies.append((body, sig))
    with open(path, "w") as f:
        f.write("local bodies = {\n")
        for body, sig in bodies:
            f.write("  {%s, %s},\n" % (lua_str(body), lua_str("sha256=" + sig)))
        f.write("}\n")
        f.write(
            """
local i = 0
request = function()
  i = i % #bodies + 1
  local b = bodies[i]
  return wrk.format("POST", "/webhooks/cloudapi/main",
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = b[2]}, b[1])
end
"""
        )


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    exe = sys.argv[1] if len(sys.argv) > 1 else "target/release/whatsapp_exporter"
    tmp = tempfile.mkdtemp()
    port = free_port()
    cfg = os.path.join(tmp, "config.yml")
    with open(cfg, "w") as f:
        f.write(
            f"""gateways:
  - name: brand
    provider: cloudapi
    url: http://127.0.0.1:9
    phone_number_id: "{NUMBER}"
    token: bench-token
webhooks:
  cloudapi:
    - app: main
      app_secret: {APP_SECRET}
      verify_token: bench-verify-token
"""
        )
    proc = subprocess.Popen(
        [exe, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}",
         "--no-background-polling", "--log.level", "warn"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        print(f"{'batch':>5} {'requests/s':>11} {'statuses/s':>11} {'exporter CPU':>13} "
              f"{'CPU per status':>15} {'statuses/s per core':>20}")
        for n in (1, 10, 100):
            script = os.path.join(tmp, f"post{n}.lua")
            lua_script(script, n)
            before = cpu_seconds(proc.pid)
            out = subprocess.run(
                ["wrk", "-t1", "-c32", f"-d{DURATION}s", "-s", script, f"http://127.0.0.1:{port}"],
                capture_output=True, text=True, check=True,
            ).stdout
            cpu = cpu_seconds(proc.pid) - before
            reqs = int(re.search(r"(\d+) requests in", out).group(1))
            if "Non-2xx" in out:
                sys.exit(f"answers other than 200:\n{out}")
            statuses = reqs * n
            print(f"{n:>5} {reqs / DURATION:>11.0f} {statuses / DURATION:>11.0f} "
                  f"{cpu / DURATION * 100:>12.0f}% {cpu / statuses * 1e6:>13.1f}µs "
                  f"{statuses / cpu:>20.0f}")
        m = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        got = re.search(r'whatsapp_message_delivery_seconds_count\{gateway="brand"[^}]*\} (\S+)', m)
        print(f"sent→delivered observed: {got.group(1) if got else 'none'}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
