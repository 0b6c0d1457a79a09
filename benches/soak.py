#!/usr/bin/env python3
"""Soak: 100 gateways polled every second (healthy, failing and broken ones), /metrics scraped as
fast as one client can, and the configuration reloaded every 10 s, for SOAK_SECONDS (default 180).
Prints RSS over time, scrape and reload counts, and every error; exits 1 on any error or if RSS
keeps growing.

Usage: python3 benches/soak.py [path/to/whatsapp_exporter]   (needs nginx: apt-get install nginx-light)
"""

import os
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402  (the helpers to start nginx and read /proc)


def write_config(path, nginx, dead, extra):
    with open(path, "w") as f:
        f.write("global:\n  interval: 1s\n  timeout: 800ms\ngateways:\n")
        for i in range(100 + extra):
            # Most answer; every tenth points at a closed port; every seventh at a 404 path.
            url = dead if i % 10 == 9 else nginx
            instance = f"I{i}" if i % 7 else f"missing/{i}"
            f.write(f"  - name: soak-{i:03d}\n    provider: plugzapi\n    url: {url}\n    instance: {instance}\n    token: soak-token\n")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/whatsapp_exporter"
    seconds = int(os.environ.get("SOAK_SECONDS", "180"))
    procs = c.Procs()
    tmp = tempfile.mkdtemp(prefix="wa-soak-")
    errors, scrapes, reloads, rss = [], [0], 0, []
    try:
        nginx = c.start_nginx(procs, tmp)
        dead = f"http://127.0.0.1:{c.free_port()}"
        cfg = os.path.join(tmp, "soak.yml")
        write_config(cfg, nginx, dead, 0)
        port = c.free_port()
        p = procs.start([binary, "--config.file", cfg, "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"])
        base = f"http://127.0.0.1:{port}"
        c.wait_http(f"{base}/-/healthy")
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                try:
                    text = c.get(f"{base}/metrics", gz=True)
                    if "whatsapp_up{" not in text and scrapes[0] > 10:
                        errors.append("a scrape without gateway series")
                    scrapes[0] += 1
                except Exception as e:  # noqa: BLE001 - every failure is a finding
                    errors.append(f"scrape: {e}")

        t = threading.Thread(target=scrape)
        t.start()
        start = time.time()
        while time.time() - start < seconds:
            time.sleep(10)
            reloads += 1
            write_config(cfg, nginx, dead, 10 * (reloads % 2))
            try:
                urllib.request.urlopen(urllib.request.Request(f"{base}/-/reload", method="POST"), timeout=10).read()
            except Exception as e:  # noqa: BLE001
                errors.append(f"reload: {e}")
            rss.append(c.rss_mib(p.pid))
            if p.poll() is not None:
                errors.append(f"exporter exited with {p.returncode}")
                break
        stop.set()
        t.join()
        cpu = c.cpu_seconds(p.pid)
    finally:
        procs.stop_all()
    warm = rss[len(rss) // 3:] or rss
    growth = max(warm) - min(warm)
    print(f"soak: {seconds} s, 100-110 gateways at 1 s, {scrapes[0]} scrapes, {reloads} reloads, exporter CPU {cpu:.1f} s")
    print("soak: RSS MiB every 10 s: " + " ".join(f"{r:.1f}" for r in rss))
    print(f"soak: RSS after warm-up {min(warm):.1f}-{max(warm):.1f} MiB (spread {growth:.1f} MiB)")
    for e in errors[:20]:
        print(f"soak: error: {e}")
    ok = not errors and growth < 8
    print(f"soak: {1 if ok else 0} passed, {0 if ok else 1} failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
