#!/usr/bin/env bash
# Checks the deployment examples in docs/deploy/ as far as this machine allows, and says
# which checks ran:
# - Dockerfile: its stages and the lines the docs rely on (multi-stage rust:bookworm build
#   with --locked, debian:bookworm-slim runtime with ca-certificates, ENTRYPOINT/CMD);
#   with --docker and a working Docker daemon, `docker build` too.
# - compose.yaml: `docker compose config` when the compose plugin works, else parsed as YAML
#   (the services, the shared data volume, the config mounted read-only, the secret).
# - kubernetes.yaml: each document's apiVersion/kind/metadata and required fields, volume
#   mounts against the pod's volumes, the CronJob's schedule; kubeconform when installed.
# - the example lifeboat.toml files (docs/deploy/lifeboat.toml and the ConfigMap's) load, and
#   `lifeboat install systemd` accepts them, with $LIFEBOAT_BIN or target/debug/lifeboat.
#   bash scripts/check-deploy.sh            # cheap checks (scripts/test.sh runs this)
#   bash scripts/check-deploy.sh --docker   # also docker build (slow: a release build)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
D="$ROOT/docs/deploy"
if ! python3 -c 'import yaml' 2>/dev/null; then
  # (A Debian-managed python3 refuses plain pip installs: PEP 668.)
  python3 -m pip install -q pyyaml >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages pyyaml >/dev/null 2>&1 \
    || { echo "check-deploy: needs python3's yaml module (pip install pyyaml, or apt-get install python3-yaml)" >&2; exit 1; }
fi
BIN="${LIFEBOAT_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/lifeboat}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

python3 - "$D" "$TMP" <<'PY'
import re, sys, yaml, pathlib
d, tmp = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
fail = []
def check(cond, msg):
    if not cond:
        fail.append(msg)

# Dockerfile
df = (d / "Dockerfile").read_text()
lines = [l.strip() for l in re.sub(r"\\\n", " ", df).splitlines() if l.strip() and not l.strip().startswith("#")]
froms = [l for l in lines if l.startswith("FROM ")]
check(len(froms) == 2, f"Dockerfile: want 2 stages, got {froms}")
check(froms and re.match(r"FROM rust:bookworm AS (\w+)", froms[0]), "Dockerfile: build stage is not rust:bookworm AS NAME")
check(len(froms) > 1 and froms[1] == "FROM debian:bookworm-slim", "Dockerfile: runtime is not debian:bookworm-slim")
check(any("cargo build --release --locked" in l for l in lines), "Dockerfile: no cargo build --release --locked")
check(any("ca-certificates" in l for l in lines), "Dockerfile: no ca-certificates")
check('ENTRYPOINT ["lifeboat"]' in lines, 'Dockerfile: ENTRYPOINT ["lifeboat"] missing')
check('CMD ["run"]' in lines, 'Dockerfile: CMD ["run"] missing')
stage = re.match(r"FROM \S+ AS (\w+)", froms[0]).group(1) if froms else "?"
check(any(l.startswith(f"COPY --from={stage} ") for l in lines), "Dockerfile: runtime does not copy from the build stage")
check(any(l.startswith("USER ") for l in lines) and "ARG LIFEBOAT_UID" in df, "Dockerfile: no non-root option")

# compose.yaml
c = yaml.safe_load((d / "compose.yaml").read_text())
svc = c.get("services", {})
check({"chat", "lifeboat"} <= set(svc), f"compose: services {list(svc)}")
lb = svc.get("lifeboat", {})
vols = lb.get("volumes", [])
check(any(v.startswith("chat-data:/data") for v in vols), "compose: lifeboat does not share chat-data")
check(any(v.startswith("chat-data:") for v in svc.get("chat", {}).get("volumes", [])), "compose: chat has no chat-data volume")
check(any(v.endswith(":/etc/lifeboat/lifeboat.toml:ro") for v in vols), "compose: config not mounted read-only")
check("chat-data" in c.get("volumes", {}), "compose: volume chat-data not declared")
for s in lb.get("secrets", []):
    check(s in c.get("secrets", {}), f"compose: secret {s} not declared")
check(lb.get("build", {}).get("dockerfile") == "docs/deploy/Dockerfile", "compose: build does not use the Dockerfile")
check((d / lb.get("build", {}).get("context", ".") / "Cargo.toml").exists(), "compose: build context is not the repository root")
check(lb.get("command", [None])[0] == "run", "compose: lifeboat does not run `lifeboat run`")

# kubernetes.yaml
docs = [x for x in yaml.safe_load_all((d / "kubernetes.yaml").read_text()) if x]
want = {"ConfigMap": "v1", "PersistentVolumeClaim": "v1", "Deployment": "apps/v1", "CronJob": "batch/v1"}
kinds = {x.get("kind"): x for x in docs}
check(set(kinds) == set(want), f"kubernetes: kinds {list(kinds)}")
for x in docs:
    k = x.get("kind")
    check(x.get("apiVersion") == want.get(k), f"kubernetes: {k} apiVersion {x.get('apiVersion')}")
    check(isinstance(x.get("metadata", {}).get("name"), str), f"kubernetes: {k} has no metadata.name")
def pod(spec, where):
    check(spec.get("containers"), f"{where}: no containers")
    vols = {v["name"] for v in spec.get("volumes", [])}
    for ct in spec.get("containers", []):
        check(ct.get("name") and ct.get("image"), f"{where}: container without name or image")
        for m in ct.get("volumeMounts", []):
            check(m["name"] in vols, f"{where}/{ct.get('name')}: mount {m['name']} has no volume")
            check(m.get("mountPath", "").startswith("/"), f"{where}: mountPath {m.get('mountPath')}")
        for e in ct.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            check("value" in e or ref, f"{where}: env {e.get('name')} has no value")
    return spec
dep = kinds.get("Deployment", {})
ds = dep.get("spec", {})
check(ds.get("selector", {}).get("matchLabels", {}).items() <= ds.get("template", {}).get("metadata", {}).get("labels", {}).items(),
      "kubernetes: Deployment selector does not match its template")
p = pod(ds.get("template", {}).get("spec", {}), "Deployment")
names = [ct["name"] for ct in p.get("containers", [])]
check("lifeboat" in names and len(names) >= 2, "kubernetes: no lifeboat sidecar beside the app")
def mounts(ct): return {m["name"]: m["mountPath"] for m in ct.get("volumeMounts", [])}
cts = {ct["name"]: ct for ct in p.get("containers", [])}
if "lifeboat" in cts:
    check(cts["lifeboat"].get("args", [None])[0] == "run", "kubernetes: the sidecar does not run `lifeboat run`")
    shared = [n for n, path in mounts(cts["lifeboat"]).items() if any(n == m for c in cts.values() if c is not cts["lifeboat"] for m in mounts(c))]
    check(shared, "kubernetes: the sidecar shares no volume with the app")
cj = kinds.get("CronJob", {}).get("spec", {})
check(len(str(cj.get("schedule", "")).split()) == 5, "kubernetes: CronJob schedule is not 5 fields")
jt = pod(cj.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}), "CronJob")
check(jt.get("restartPolicy") in ("Never", "OnFailure"), "kubernetes: CronJob restartPolicy")
check(any(ct.get("args", [None])[0] == "backup" for ct in jt.get("containers", [])), "kubernetes: CronJob does not back up")
cm = kinds.get("ConfigMap", {}).get("data", {})
check("lifeboat.toml" in cm, "kubernetes: ConfigMap has no lifeboat.toml")
(tmp / "k8s.toml").write_text(cm.get("lifeboat.toml", ""))

if fail:
    print("\n".join("check-deploy: " + f for f in fail), file=sys.stderr)
    sys.exit(1)
print("check-deploy: Dockerfile, compose.yaml, kubernetes.yaml: structure ok (python3 + yaml)")
PY

if docker compose version >/dev/null 2>&1; then
  (cd "$D" && docker compose -f compose.yaml config -q) && echo "check-deploy: docker compose config: ok"
else
  echo "check-deploy: no docker compose here: compose.yaml checked as YAML only"
fi
if command -v kubeconform >/dev/null; then
  kubeconform -strict -summary "$D/kubernetes.yaml"
else
  echo "check-deploy: no kubeconform here: kubernetes.yaml checked against its kinds' required fields only"
fi

if [ -x "$BIN" ]; then
  for cfg in "$D/lifeboat.toml" "$TMP/k8s.toml"; do
    cp "$cfg" "$TMP/check.toml"
    chmod 600 "$TMP/check.toml"
    "$BIN" -c "$TMP/check.toml" install systemd --bin /usr/local/bin/lifeboat >/dev/null
    "$BIN" -c "$TMP/check.toml" install cron --bin /usr/local/bin/lifeboat >/dev/null
  done
  echo "check-deploy: the example configs load and generate units and crontab lines ($BIN)"
else
  echo "check-deploy: no lifeboat binary at $BIN: example configs not loaded"
fi

if [ "${1:-}" = "--docker" ]; then
  if docker info >/dev/null 2>&1; then
    docker build -f "$D/Dockerfile" -t lifeboat:check "$ROOT"
    docker run --rm lifeboat:check --version
    echo "check-deploy: docker build: ok"
  else
    echo "check-deploy: docker daemon not available here: image not built" >&2
    exit 1
  fi
fi
