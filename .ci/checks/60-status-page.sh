#!/usr/bin/env bash
# The status page at / as a browser renders it: headless Chromium loads the --demo exporter's page,
# and the rendered table must list every demo gateway with its state, and no secret. Screenshots
# (desktop and phone widths) go to $SCREENSHOTS (default: a temporary directory).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
bin=${1:-target/release/whatsapp_exporter}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
shots=${SCREENSHOTS:-$work}
"$bin" --demo --web.listen-address "127.0.0.1:$port" --log.level warn 2>"$work/exporter.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work/profile"' EXIT
for _ in $(seq 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/-/healthy', timeout=1)" 2>/dev/null && break
  sleep 0.1
done
sleep 12   # every demo gateway (5 s interval) has been polled at least once

chrome() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" "$@" 2>/dev/null
}
chrome --dump-dom "http://127.0.0.1:$port/" > "$work/dom.html"
chrome --screenshot="$shots/status-page-desktop.png" --window-size=1280,720 "http://127.0.0.1:$port/" >/dev/null
chrome --screenshot="$shots/status-page-phone.png" --window-size=390,844 "http://127.0.0.1:$port/" >/dev/null

python3 - "$work/dom.html" <<'PY'
import sys
from html.parser import HTMLParser

class Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.table = None; self.rows = {}; self.row = None; self.cell = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.table = a.get("id")
        elif tag == "tr" and self.table:
            self.row = []
        elif tag == "td" and self.row is not None:
            self.cell = ""
    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.row.append(self.cell.strip()); self.cell = None
        elif tag == "tr" and self.row:
            self.rows.setdefault(self.table, []).append(self.row); self.row = None
        elif tag == "table":
            self.table = None
    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

dom = open(sys.argv[1]).read()
p = Rows(); p.feed(dom)
gateways = {r[0]: r for r in p.rows.get("gateways", [])}
checks = []
want = {"sales": "plugzapi", "support": "zapi", "brand": "cloudapi", "helpdesk": "greenapi", "onprem": "waba"}
for name, provider in want.items():
    row = gateways.get(name)
    checks.append((f"row for {name}", row is not None and row[1] == provider and row[2] in ("up", "down")))
checks.append(("every row has a state or an error", all(r[4] or r[8] for r in gateways.values())))
checks.append(("PlugChat account listed", any(r[0] == "demo" for r in p.rows.get("webhooks", []))))
numbers = {r[0]: r for r in p.rows.get("numbers", []) if len(r) == 6}
states = ("working", "connected, no traffic to judge by", "unknown", "restricted",
          "connected but not working", "disconnected")
for name in ("sales", "support", "brand", "helpdesk", "onprem", "waha/default"):
    row = numbers.get(name)
    checks.append((f"number {name} with its state in words", row is not None and row[1] in states))
checks.append(("discovered instances listed under their server",
               any(r[0].startswith("server evo") for r in p.rows.get("numbers", []))
               and any(n.startswith("evo/") for n in numbers)))
checks.append(("the numbers lead the page", dom.find('id="numbers"') < dom.find('id="gateways"')))
for secret in ("demo-token-not-secret", "demo-client-token", "demo-waba-password", "demo-plugchat-secret"):
    checks.append((f"no {secret}", secret not in dom))
checks.append(("refreshes itself", 'http-equiv="refresh"' in dom))
failed = [name for name, ok in checks if not ok]
for name, ok in checks:
    print(("ok   - " if ok else "FAIL - ") + name)
print(f"status page: {len(checks) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PY
echo "screenshots: $shots/status-page-desktop.png, $shots/status-page-phone.png"
