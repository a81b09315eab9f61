#!/usr/bin/env bash
# The app's write latency beside a continuous-capture daemon, and nothing else: a quicker loop
# than continuous.sh for finding what costs the app time (issue 14's latency target).
#
#   bench/latency.sh                        # variants "none lifeboat", the paced day over 300 s
#   VARIANTS="none lifeboat lifeboat-shm" DURATION=180 PCT=0.3 bench/latency.sh
#   ROUNDS=2 VARIANTS="none reader lifeboat" DURATION=120 PCT=0.2 bench/latency.sh  # interleaved
#   OUT=/tmp/lbbench/lat-h1000 VARIANTS=lifeboat LIFEBOAT_ENV="LIFEBOAT_X_HANDOVER=1000" bench/latency.sh
#
# Variants (each on a fresh copy of v0, one after another; no sampler running):
#   none           no daemon
#   lifeboat       `lifeboat run`, continuous = INTERVAL, repository beside the database
#   lifeboat-shm   the same, repository on /dev/shm (takes the repository's fsyncs off the disk)
#   lifeboat-10s   the same with continuous = "10s" (a tenth of the per-interval work; the WAL
#                  is still read every 20 ms)
#   litestream     `litestream replicate` to a file replica beside the database
#   reader         bench/anchor_reader.py: a rolling read snapshot as lifeboat's follower keeps
#                  (two connections, renewed every second, let go at 4,096 frames), doing nothing
#                  else: what holding the snapshot alone costs the app
# Extra environment for the lifeboat variants: LIFEBOAT_ENV="K=V ..." (passed to the daemon).
# Per variant: $OUT/<variant>/lat.txt (mutate_lat.py's per-transaction lines) and cpu (daemon
# utime+stime over the day); the summary: p50/p90/p99 of the transaction and of the statements
# before COMMIT, per variant and as a ratio to "none".
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${LBBENCH_DIR:-/tmp/lbbench}"
OUT="${OUT:-$DATA/lat}"
V0="${V0:-$DATA/large/v0.db}"
DURATION="${DURATION:-300}"
PCT="${PCT:-1}"
VARIANTS="${VARIANTS:-none lifeboat}"
INTERVAL="${INTERVAL:-1s}"
SEED="${SEED:-1}"
LIFEBOAT="${LIFEBOAT:-$HERE/../target/release/lifeboat}"
LIFEBOAT_ENV="${LIFEBOAT_ENV:-}"
LITESTREAM="${LITESTREAM:-$(command -v litestream || true)}"
if command -v pyenv >/dev/null && [[ "$LITESTREAM" == */shims/* ]]; then LITESTREAM=$(pyenv which litestream); fi
export LIFEBOAT_PASSWORD=lbbench-not-secret
[ -f "$V0" ] || { echo "no $V0: python3 bench/gen_chat_db.py --out $V0 --size-mb 1024 --seed 1" >&2; exit 2; }
mkdir -p "$OUT"
DPID=""
trap '[ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null || true' EXIT
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }

ROUNDS="${ROUNDS:-1}"
ALL=""
for r in $(seq 1 "$ROUNDS"); do for v in $VARIANTS; do ALL="$ALL $v"; done; done
n=0
for v in $ALL; do
  n=$((n + 1))
  name="$v"; [ "$ROUNDS" -gt 1 ] && name="$v.$n"
  W="$OUT/$name"; rm -rf "$W"; mkdir -p "$W"
  log "$v: fresh copy of v0 (load $(cut -d' ' -f1-3 /proc/loadavg))"
  cp "$V0" "$W/live.db"; rm -f "$W/live.db-wal" "$W/live.db-shm"
  REPO="$W/repo"
  case "$v" in
    lifeboat-shm) REPO="/dev/shm/lbbench-lat-repo"; rm -rf "$REPO" ;;
  esac
  iv="$INTERVAL"; [ "$v" = lifeboat-10s ] && iv=10s
  case "$v" in
    lifeboat*)
      "$LIFEBOAT" --repo "$REPO" init >>"$W/daemon.log" 2>&1
      printf '[repository.main]\npath = "%s"\n[daemon]\nstate_file = "%s"\n[app.chat]\nsqlite = ["%s"]\ncontinuous = "%s"\n' \
        "$REPO" "$W/daemon-state.json" "$W/live.db" "$iv" > "$W/lifeboat.toml"
      # shellcheck disable=SC2086
      env $LIFEBOAT_ENV "$LIFEBOAT" -c "$W/lifeboat.toml" run -v >>"$W/daemon.log" 2>&1 & DPID=$!
      i=0; until grep -q 'following from point' "$W/daemon.log" || [ $i -ge 600 ]; do sleep 0.5; i=$((i + 1)); done
      sleep 5 ;;
    reader)
      python3 "$HERE/anchor_reader.py" "$W/live.db" >>"$W/daemon.log" 2>&1 & DPID=$!
      sleep 2 ;;
    litestream)
      mkdir -p "$W/repo"
      "$LITESTREAM" replicate "$W/live.db" "file://$W/repo" >>"$W/daemon.log" 2>&1 & DPID=$!
      sleep 90 ;; # its first snapshot (about 65 s here)
  esac
  # No writeback of the copy or of the daemon's first point during the measured day.
  sync; sleep 3
  c0=0; [ -n "$DPID" ] && c0=$(cpu_s "$DPID")
  log "$v: day of writes (${DURATION} s, pct $PCT)"
  python3 "$HERE/mutate_lat.py" --db "$W/live.db" --seed "$SEED" --day 1 --pct "$PCT" \
    --duration "$DURATION" --latency-out "$W/lat.txt" > "$W/mutate.json"
  if [ -n "$DPID" ]; then
    echo "$(cpu_s "$DPID") - $c0" | bc > "$W/cpu"
    grep -c 'comparing every page' "$W/daemon.log" > "$W/heals" || true
    kill -TERM "$DPID"; wait "$DPID" || true; DPID=""
  fi
  rm -rf "$W/live.db" "$W/live.db-wal" "$W/live.db-shm" "$W/repo" /dev/shm/lbbench-lat-repo
done

python3 - "$OUT" <<'EOF'
import os, sys
out = sys.argv[1]
variants = sorted(d for d in os.listdir(out) if os.path.exists(os.path.join(out, d, "lat.txt")))
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]
rows = {}
for v in variants:
    tx, pre = [], []
    for line in open(os.path.join(out, v, "lat.txt")):
        a, c = line.split()[:2]
        tx.append(int(a)); pre.append(int(a) - int(c))
    rows[v] = (tx, pre)
nones = [v for v in rows if v.split(".")[0] == "none"]
base = (sorted(x for v in nones for x in rows[v][0]),) if nones else None
print(f"{'variant':14} {'n':>7} {'tx p50':>8} {'p90':>8} {'p99':>8} {'pre p50':>8} {'p99':>8}  ratio p50/p99   daemon CPU  heals")
for v, (tx, pre) in rows.items():
    r = ""
    if base and v.split(".")[0] != "none":
        r = f"{pct(tx, 50) / pct(base[0], 50):.2f}x / {pct(tx, 99) / pct(base[0], 99):.2f}x"
    cpu = open(os.path.join(out, v, "cpu")).read().strip() if os.path.exists(os.path.join(out, v, "cpu")) else ""
    heals = open(os.path.join(out, v, "heals")).read().strip() if os.path.exists(os.path.join(out, v, "heals")) else ""
    print(f"{v:14} {len(tx):7} {pct(tx, 50):8} {pct(tx, 90):8} {pct(tx, 99):8} {pct(pre, 50):8} {pct(pre, 99):8}  {r:15} {cpu:>10} {heals:>6}")
EOF
