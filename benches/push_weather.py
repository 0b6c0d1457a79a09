#!/usr/bin/env python3
"""Foul weather on the push side: the webhook routes face the internet. Each scenario starts its
own exporter (and mock gateway where it polls one) on 127.0.0.1 from a temporary configuration,
attacks it for a bounded time with a bounded number of connections, prints one line

    SCENARIO: PASS|FAIL  measured: ...  |  bar: ...

and exits 1 when a bar is not met. It reuses the client, mocks and exporter handling of
benches/foul_weather.py; only processes this script started are stopped, by PID.

Scenarios:
  push-bodies     128 connections post unsigned 4 MiB Cloud API bodies (declared, then chunked) and
                  128 post 1 MiB WAHA bodies with a wrong HMAC, then stall; the exporter's RSS
  push-trickle    1,024 connections from 127.0.0.1 and 127.0.0.2 trickle webhook bodies; 28 scrapes
                  from 127.0.0.1, 127.0.0.2 and 127.0.0.3
  push-logs       GET and PUT on webhook paths, text/plain posts, no secret, as fast as possible for
                  10 s at debug level; bytes logged and the dropped-lines counter
  slowloris-same  1,100 slow connections from the scraper's own address, reopened at once when
                  closed; 20 scrapes from that address
  cloud-numbers   a signed Cloud API body naming 36,000 phone numbers; its answer time and a scrape
                  made meanwhile
  all             every scenario in turn

Usage: python3 benches/push_weather.py SCENARIO [--binary target/release/whatsapp_exporter]
"""

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import foul_weather as fw  # noqa: E402  (the shared client, mocks and exporter)

APP_SECRET = "pw-app-secret-0123456789abcdef"
VERIFY = "pw-verify-token-0123456789"
HMAC_KEY = "pw-waha-hmac-key-0123456789abcdef"
URL_SECRET = "pw-url-secret-0123456789abcdef"
MIB = fw.MIB

HOOKS = (f"webhooks:\n  cloudapi:\n    - app: main\n      app_secret: {APP_SECRET}\n"
         f"      verify_token: {VERIFY}\n")


def gateways(url):
    """A Z-API gateway with a URL secret, a WAHA one with an HMAC key and a Cloud API number,
    polled once an hour (the pushes are what is attacked)."""
    return [
        fw.plugzapi("sales", url, "I1", f"    interval: 1h\n    webhooks:\n      secret: {URL_SECRET}\n"),
        f"  - name: waha\n    provider: waha\n    url: {url}\n    token: pw-waha-api-key\n"
        f"    instance: default\n    interval: 1h\n    webhooks:\n      hmac_key: {HMAC_KEY}\n",
        f"  - name: brand\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"106540352242922\"\n"
        f"    token: pw-meta-token\n    interval: 1h\n",
    ]


def start(binary, tmp, log_level="warn"):
    mocks = fw.Mocks("status")
    ex = fw.Exporter(binary, tmp, gateways(mocks.url("status")), webhooks=HOOKS, log_level=log_level)
    return mocks, ex


def metric(text, name, **labels):
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def cloud_signature(body):
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


async def connect(port, source="127.0.0.1"):
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 5)


async def answer_status(reader, timeout):
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1]) if line else None
    except (asyncio.TimeoutError, OSError, ValueError, IndexError):
        return None


async def post_and_stall(port, path, headers, size, chunked, stall, statuses):
    """Sends all of a `size` body but its last byte, then waits `stall` seconds for an answer."""
    try:
        reader, writer = await connect(port)
    except (OSError, asyncio.TimeoutError):
        statuses["connect"] = statuses.get("connect", 0) + 1
        return
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
        writer.write(head.encode())
        chunk, sent = 64 * 1024, 0
        while sent < size - 1:
            n = min(chunk, size - 1 - sent)
            data = b"x" * n
            writer.write(f"{n:x}\r\n".encode() + data + b"\r\n" if chunked else data)
            await asyncio.wait_for(writer.drain(), stall)
            sent += n
        status = await answer_status(reader, stall)
    except (OSError, asyncio.TimeoutError):
        status = None
    finally:
        writer.close()
    statuses[status] = statuses.get(status, 0) + 1


async def watch_memory(ex, seconds):
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and ex.p.poll() is None:
        peak = max(peak, ex.memory_kib()[0])
        await asyncio.sleep(0.1)
    return peak


async def push_bodies(binary, tmp):
    limit = fw.deployed_memory_limit_mib()
    mocks, ex = start(binary, tmp)
    await ex.wait_ready()
    base = ex.memory_kib()[0]
    cloud = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    waha = {"X-Webhook-Hmac": "0" * 128, "X-Webhook-Hmac-Algorithm": "sha512"}
    parts, peak_all, ok = [], 0, True
    for name, path, headers, size, chunked in [
        ("cloud 4 MiB declared", "/webhooks/cloudapi/main", cloud, 4 * MIB, False),
        ("cloud 4 MiB chunked", "/webhooks/cloudapi/main", cloud, 4 * MIB, True),
        ("waha 1 MiB declared", "/webhooks/waha", waha, MIB, False),
    ]:
        statuses = {}
        attack = asyncio.gather(*(post_and_stall(ex.port, path, headers, size, chunked, 12, statuses)
                                  for _ in range(128)))
        peak, _ = await asyncio.gather(watch_memory(ex, 13), attack)
        peak_all = max(peak_all, peak)
        parts.append(f"{name}: peak RSS {peak / 1024:.0f} MiB, answers {dict(sorted(statuses.items(), key=str))}")
    # The budget comes back: a signed push is taken after the attack.
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    status, _, _ = await fw.fetch(ex.port, "POST", "/webhooks/cloudapi/main",
                                  {"Content-Type": "application/json", "X-Hub-Signature-256": cloud_signature(body)}, body)
    text = await ex.metrics()
    overloaded = metric(text, "whatsapp_webhook_rejected_total", reason="overloaded")
    alive = ex.p.poll() is None
    ok = alive and peak_all / 1024 < limit / 2 and status in (200, 422)
    fw.stop(ex.p)
    fw.stop(mocks.p)
    return fw.result("push-bodies", ok,
                     f"baseline {base / 1024:.0f} MiB; " + "; ".join(parts)
                     + f"; a signed push after: {status}; overloaded refusals counted: {overloaded}",
                     f"peak RSS < {limit // 2} MiB (half the deployed {limit} MiB), alive, a signed push taken after")


async def trickler(port, source, path, deadline, opened):
    """A webhook body that never finishes: one byte a second, reopened at once when closed."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await connect(port, source)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.2)
            continue
        opened[0] += 1
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"X-Hub-Signature-256: sha256={'0' * 64}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            while time.monotonic() < deadline:
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(4096), 1) == b"":
                        break
                except asyncio.TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            writer.close()


async def scrapes_from(ex, sources, count, spread, failures=None):
    """`count` scrapes on fresh connections, `spread` seconds apart; what failed goes to `failures`."""
    failures = [] if failures is None else failures

    async def one(i):
        await asyncio.sleep(i * spread)
        src = sources[i % len(sources)]
        t0 = time.monotonic()
        try:
            reader, writer = await connect(ex.port, src)
        except (OSError, asyncio.TimeoutError) as e:
            failures.append(f"connect {type(e).__name__}")
            return False
        try:
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)
            ok = data.startswith(b"HTTP/1.1 200") and b"whatsapp_up{" in data
            if not ok:
                failures.append(f"answer {data[:12]!r} after {time.monotonic() - t0:.2f} s")
            return ok
        except (OSError, asyncio.TimeoutError) as e:
            failures.append(f"request {type(e).__name__} after {time.monotonic() - t0:.2f} s")
            return False
        finally:
            writer.close()

    return await asyncio.gather(*(one(i) for i in range(count)))


async def push_trickle(binary, tmp):
    mocks, ex = start(binary, tmp)
    await ex.wait_ready()
    deadline = time.monotonic() + 20
    opened = [0]
    attack = asyncio.gather(*(trickler(ex.port, "127.0.0.1" if i % 2 else "127.0.0.2",
                                       "/webhooks/cloudapi/main", deadline, opened) for i in range(1024)))
    await asyncio.sleep(4)
    oks = await scrapes_from(ex, ["127.0.0.1", "127.0.0.2", "127.0.0.3"], 28, 0.4)
    await attack
    good = sum(oks)
    fw.stop(ex.p)
    fw.stop(mocks.p)
    return fw.result("push-trickle", good == 28,
                     f"{good}/28 scrapes answered (attack connections opened {opened[0]})",
                     "28/28 scrapes, from the attackers' addresses and another")


async def push_logs(binary, tmp):
    mocks, ex = start(binary, tmp, log_level="debug")
    await ex.wait_ready()
    await asyncio.sleep(1)
    size0 = os.path.getsize(ex.log_path)
    before = metric(await ex.metrics(), "whatsapp_exporter_log_lines_dropped_total") or 0.0
    size1 = os.path.getsize(ex.log_path)
    kinds = [
        ("GET", "/webhooks/waha", {}, b""),
        ("PUT", "/webhooks/cloudapi/main", {"Content-Type": "application/json"}, b"{}"),
        ("POST", f"/webhooks/sales?secret={URL_SECRET}", {"Content-Type": "text/plain"}, b"hello"),
        ("POST", "/webhooks/sales", {"Content-Type": "application/json"}, b"{}"),
        ("POST", "/webhooks/nobody", {"Content-Type": "application/json"}, b"{}"),
        ("POST", "/webhooks/cloudapi/main", {"Content-Type": "application/json", "X-Hub-Signature-256": "x"}, b"{}"),
    ]
    t0 = time.monotonic()
    counts = await fw.flood(ex.port, lambda i, k: kinds[(i + k) % len(kinds)], 16, 10)
    secs = time.monotonic() - t0
    await asyncio.sleep(0.5)
    size = os.path.getsize(ex.log_path) - size1 + (size1 - size0)
    dropped = (metric(await ex.metrics(), "whatsapp_exporter_log_lines_dropped_total") or 0.0) - before
    fw.stop(ex.p)
    fw.stop(mocks.p)
    total = sum(counts.values())
    return fw.result("push-logs", size < MIB and dropped > 0,
                     f"{size / 1024:.0f} KiB of log at debug level in {secs:.0f} s from {total} refused webhooks "
                     f"(answers {dict(sorted(counts.items(), key=str))}); lines dropped and counted: {dropped:.0f}",
                     "under 1 MiB in 10 s, with the dropped lines counted")


async def slowloris(port, deadline, opened):
    """Sends a request head a byte a second, never finishing it; reopens at once when closed."""
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
    while time.monotonic() < deadline:
        try:
            reader, writer = await connect(port)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.01)
            continue
        opened[0] += 1
        try:
            k = 0
            while time.monotonic() < deadline and k < len(head):
                writer.write(head[k:k + 1])
                await writer.drain()
                k += 1
                try:
                    if await asyncio.wait_for(reader.read(4096), 1) == b"":
                        break
                except asyncio.TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            writer.close()


async def slowloris_same(binary, tmp):
    mocks, ex = start(binary, tmp, log_level=os.environ.get("PUSH_WEATHER_LOG_LEVEL", "warn"))
    await ex.wait_ready()
    deadline = time.monotonic() + 20
    opened = [0]
    attack = asyncio.gather(*(slowloris(ex.port, deadline, opened) for _ in range(1100)))
    await asyncio.sleep(3)
    failures = []
    oks = await scrapes_from(ex, ["127.0.0.1"], 20, 0.5, failures)
    await attack
    good = sum(oks)
    fw.stop(ex.p)
    fw.stop(mocks.p)
    return fw.result("slowloris-same", good >= 19,
                     f"{good}/20 scrapes answered (slow connections opened {opened[0]}; failures: "
                     f"{', '.join(sorted(set(failures))) or 'none'})",
                     "at least 19/20 scrapes from the attacker's own address")


def many_numbers_body(n):
    """Under the 4 MiB cap: one short `messages` change per number, each teaching its display
    number and WABA (the learning that was quadratic)."""
    changes = [{"field": "messages", "value": {
        "metadata": {"display_phone_number": f"1555{i:07d}", "phone_number_id": f"9{i:012d}"}}}
        for i in range(n)]
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": changes}]},
                      separators=(",", ":")).encode()


async def cloud_numbers(binary, tmp):
    mocks, ex = start(binary, tmp)
    await ex.wait_ready()
    body = many_numbers_body(36_000)
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": cloud_signature(body)}
    times, statuses, scrape_times = [], [], []
    for _ in range(3):
        async def scrape_later():
            await asyncio.sleep(0.05)
            _, _, secs = await ex.get("/metrics", timeout=30)
            return secs

        (status, _, secs), scrape = await asyncio.gather(
            fw.fetch(ex.port, "POST", "/webhooks/cloudapi/main", headers, body, timeout=30), scrape_later())
        times.append(secs)
        statuses.append(status)
        scrape_times.append(scrape)
    fw.stop(ex.p)
    fw.stop(mocks.p)
    med, scr = statistics.median(times), statistics.median(scrape_times)
    return fw.result("cloud-numbers", all(s == 200 for s in statuses) and med < 0.5 and scr < 0.5,
                     f"{len(body) / MIB:.1f} MiB body naming 36,000 numbers answered {statuses} in a median "
                     f"{med * 1000:.0f} ms (sent over loopback included); a scrape meanwhile {scr * 1000:.0f} ms",
                     "answered 200 in under 500 ms, a scrape meanwhile under 500 ms")


SCENARIOS = {
    "push-bodies": push_bodies,
    "push-trickle": push_trickle,
    "push-logs": push_logs,
    "slowloris-same": slowloris_same,
    "cloud-numbers": cloud_numbers,
}


def run(name, binary):
    tmp = tempfile.mkdtemp(prefix=f"wa-push-{name}-")
    try:
        return asyncio.run(asyncio.wait_for(SCENARIOS[name](binary, tmp), 120))
    except asyncio.TimeoutError:
        return fw.result(name, False, "the scenario did not finish within 120 s", "-")
    finally:
        fw.stop_all()
        if os.environ.get("PUSH_WEATHER_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=[*SCENARIOS, "all"])
    ap.add_argument("--binary", default="target/release/whatsapp_exporter")
    a = ap.parse_args()
    if not os.access(a.binary, os.X_OK):
        raise SystemExit(f"{a.binary} is not an executable: cargo build --release")
    fw.raise_fd_limit()
    signal.signal(signal.SIGTERM, lambda *_: (fw.stop_all(), sys.exit(1)))
    names = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    results = [run(n, a.binary) for n in names]
    print(f"push_weather: {sum(results)} passed, {len(results) - sum(results)} failed")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    try:
        main()
    finally:
        fw.stop_all()
