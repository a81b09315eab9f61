#!/usr/bin/env bash
# Restore speed, interleaved: each method's repository is built once the way run_peers.sh builds
# it (backup of v0, of v1, of v1 again), then every variant restores the latest backup in turn,
# ROUNDS times (round 1: each variant once, round 2: each again, ...), so that the machine's
# noise (a shared 2-core machine) falls on all of them alike. Medians and ratios against the
# peers of the same run go to $RES/summary.md.
#
#   LIFEBOAT=target/release/lifeboat LIFEBOAT_REF=/path/to/older/lifeboat bench/restore_interleaved.sh
#   ROUNDS=5 VARIANTS="zstd restic lifeboat-first lifeboat-proven" bench/restore_interleaved.sh
#
# Variants (lifeboat's with LIFEBOAT, the -ref ones with LIFEBOAT_REF; both `--verify full`
# unless named -quick):
#   zstd, restic, borg-lz4   the peers' restore (methods/*.sh)
#   lifeboat-ref             the reference binary (runs integrity_check every time)
#   lifeboat-ref-quick       the same with --verify quick
#   lifeboat-first           this binary with no proof record (records removed before each run):
#                            checksum + integrity_check on all cores + row counts, records a proof
#   lifeboat-proven          this binary with the proof record lifeboat-first wrote just before
#                            (keep it right after lifeboat-first): checksum only (every page
#                            authenticated, the whole-database checksum compared)
#   lifeboat-quick-first     this binary, --verify quick, no proof record
# Environment: LBBENCH_DIR (default /tmp/lbbench), SIZE (default large), ROUNDS (default 5),
# RESULTS (default $LBBENCH_DIR/restore-interleaved), VARIANTS, VERIFY (1 = bench/verify.py on
# the last lifeboat-proven restore), REUSE (1 = keep a method's repository from an earlier run).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${LBBENCH_DIR:-/tmp/lbbench}"
SIZE="${SIZE:-large}"
ROUNDS="${ROUNDS:-5}"
RES="${RESULTS:-$DATA/restore-interleaved}"
VARIANTS="${VARIANTS:-zstd restic borg-lz4 lifeboat-ref lifeboat-ref-quick lifeboat-first lifeboat-proven lifeboat-quick-first}"
D="$DATA/$SIZE"
[ -f "$D/v0.db" ] && [ -f "$D/v1.db" ] || { echo "no $D/v0.db and v1.db: run bench/run_peers.sh SIZES=$SIZE first" >&2; exit 2; }
mkdir -p "$RES"
TSV="$RES/restores.tsv"
LOG="$RES/run.log"
printf 'variant\tround\twall_s\tuser_s\tsys_s\tmaxrss_kb\trc\n' > "$TSV"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

method_of() { # variant -> method script whose repository it restores
  case "$1" in
    lifeboat-ref*) echo lifeboat-ref ;;
    lifeboat*) echo lifeboat ;;
    *) echo "$1" ;;
  esac
}

# Build each method's repository once, as a run_peers.sh cycle does before its restore.
for m in $(for v in $VARIANTS; do method_of "$v"; done | sort -u); do
  f="$HERE/methods/$m.sh"
  if ! "$f" available >/dev/null 2>&1; then log "skip $m (not available)"; continue; fi
  export ST="$D/state/$m" STAGE="$D/stage/$m"
  if [ "${REUSE:-0}" = 1 ] && [ -d "$ST/repo" ]; then log "reuse $m"; continue; fi
  rm -rf "$ST" "$STAGE"; mkdir -p "$ST" "$STAGE"
  log "build $m: $("$f" version 2>/dev/null | head -1)"
  "$f" init >>"$LOG" 2>&1 || { log "$m init failed"; exit 1; }
  for p in full:v0 incr:v1 same:v1; do
    export PHASE="${p%%:*}" SRC="$D/${p##*:}.db"
    "$f" backup >>"$LOG" 2>&1 || { log "$m backup $PHASE failed"; exit 1; }
  done
done

for r in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do
    m=$(method_of "$v")
    export ST="$D/state/$m" STAGE="$D/stage/$m" OUT="$D/restore/$v/chat.db"
    [ -d "$ST/repo" ] || continue
    rm -rf "$D/restore/$v"; mkdir -p "$D/restore/$v"
    case "$v" in
      *-quick*) export LIFEBOAT_VERIFY=quick ;;
      *) export LIFEBOAT_VERIFY=full ;;
    esac
    case "$v" in *-first) rm -rf "$ST/repo/proofs" ;; esac
    tf=$(mktemp)
    /usr/bin/time -f '%e %U %S %M %x' -o "$tf" "$HERE/methods/$m.sh" restore >>"$LOG" 2>&1
    t=($(tail -1 "$tf")); rm -f "$tf"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$r" "${t[0]}" "${t[1]}" "${t[2]}" "${t[3]}" "${t[4]}" >> "$TSV"
    log "round $r $v: ${t[0]} s (user ${t[1]}, sys ${t[2]}, rc ${t[4]})"
    case "$v" in lifeboat-proven) ;; *) rm -rf "$D/restore/$v" ;; esac
  done
done

if [ "${VERIFY:-1}" = 1 ] && [ -f "$D/restore/lifeboat-proven/chat.db" ]; then
  log "verify.py on the last lifeboat-proven restore"
  python3 "$HERE/verify.py" "$D/restore/lifeboat-proven/chat.db" --ref "$D/ref-v1.json" > "$RES/verify-proven.json" 2>>"$LOG"
  log "verify.py exit $?"
fi
rm -rf "$D/restore"

python3 - "$TSV" > "$RES/summary.md" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    if r["rc"] != "0":
        print(f"FAILED: {r['variant']} round {r['round']} rc {r['rc']}")
        continue
    by.setdefault(r["variant"], []).append(r)
med = {v: statistics.median(float(r["wall_s"]) for r in rs) for v, rs in by.items()}
peers = [p for p in ("zstd", "restic", "borg-lz4") if p in med]
head = "| variant | runs | wall s median [min-max] | user s | sys s | peak RSS MiB |" + "".join(f" / {p} |" for p in peers)
print(head)
print("|" + "---|" * (6 + len(peers)))
for v, rs in by.items():
    w = sorted(float(r["wall_s"]) for r in rs)
    u = statistics.median(float(r["user_s"]) for r in rs)
    s = statistics.median(float(r["sys_s"]) for r in rs)
    m = statistics.median(int(r["maxrss_kb"]) for r in rs) / 1024
    ratios = "".join(f" {med[v] / med[p]:.2f} |" for p in peers)
    print(f"| {v} | {len(rs)} | {med[v]:.2f} [{w[0]:.2f}-{w[-1]:.2f}] | {u:.2f} | {s:.2f} | {m:.0f} |{ratios}")
EOF
cat "$RES/summary.md"
