#!/usr/bin/env bash
# Benchmark SQLite backup methods on a generated chat-server database.
#
#   bench/run_peers.sh                       # sizes "small large", all methods, 3 runs each
#   SIZES=small RUNS=5 METHODS="gzip restic lifeboat" bench/run_peers.sh
#
# Environment:
#   LBBENCH_DIR  data/work directory (default /tmp/lbbench); results go to $LBBENCH_DIR/results
#   SIZES        space-separated: small (100 MiB), large (1024 MiB), or a number of MiB
#   RUNS         cycles per method (default 3); every figure reported is the median over cycles
#   METHODS      method scripts in bench/methods/ (without .sh); missing tools are skipped
#   SEED         generator seed (default 1)
#   VERIFY       1 (default) = integrity_check + counts + per-table hash of the last restore
#   RESULTS      results directory (default $LBBENCH_DIR/results)
#   MUTATE_ARGS  extra mutate.py arguments for the writes made under a continuous method,
#                e.g. "--duration 120" to spread the day of writes over 2 minutes
#
# One cycle of a snapshot method (methods/NAME.sh, kind=snapshot):
#   fresh state dir -> init (untimed) -> backup of v0 (phase full) -> backup of v1 (phase incr,
#   v1 = v0 + one day of mutate.py) -> backup of v1 again (phase unchanged) -> restore latest
#   (phase restore)
# One cycle of a continuous method (kind=continuous, e.g. litestream):
#   fresh copy of v0 -> `backup` (phase full, e.g. replicate -once) -> `start` daemon in the
#   background -> wait until the replica is quiet (startup bytes) -> mutate.py on the live DB
#   (phase mutate-under-NAME) -> wait until quiet -> stop daemon (phase incr: its CPU and peak
#   RSS over its whole life; bytes = replica growth during the day's writes) -> restore.
# Every timed step runs under /usr/bin/time (GNU time): wall, user, sys, max RSS, exit code.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${LBBENCH_DIR:-/tmp/lbbench}"
SIZES="${SIZES:-small large}"
RUNS="${RUNS:-3}"
METHODS="${METHODS:-copy gzip pigz zstd vacuum restic rustic borg-lz4 borg-zstd litestream lifeboat}"
SEED="${SEED:-1}"
VERIFY="${VERIFY:-1}"
RES="${RESULTS:-$DATA/results}"
mkdir -p "$RES"
TSV="$RES/runs.tsv"
VTSV="$RES/verify.tsv"
LOG="$RES/run.log"
[ -s "$TSV" ] || printf 'size\tmethod\tphase\trun\twall_s\tuser_s\tsys_s\tmaxrss_kb\trc\trepo_bytes\tdelta_bytes\textra\n' > "$TSV"
[ -s "$VTSV" ] || printf 'size\tmethod\tok\tdetail\n' > "$VTSV"

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
bytes_of() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# timed OUTVAR cmd...  -> sets OUTVAR to "wall user sys maxrss rc"; command output goes to $LOG
timed() {
  local __var=$1; shift
  local tf; tf=$(mktemp)
  /usr/bin/time -f '%e %U %S %M %x' -o "$tf" "$@" >>"$LOG" 2>&1
  printf -v "$__var" '%s' "$(tail -1 "$tf")"
  rm -f "$tf"
}
row() { # size method phase run "timing" repo_bytes delta_bytes extra
  local t=($5)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" \
    "${t[0]}" "${t[1]}" "${t[2]}" "${t[3]}" "${t[4]}" "$6" "$7" "${8:-}" >> "$TSV"
}
size_mb() { case "$1" in small) echo 100 ;; large) echo 1024 ;; *) echo "$1" ;; esac; }

# Wait until a directory's byte count has not changed for $2 consecutive 1 s polls (max $3 s).
wait_quiet() {
  local dir=$1 need=$2 max=$3 last=-1 same=0 i=0 b
  while [ $i -lt "$max" ]; do
    sleep 1; i=$((i + 1))
    b=$(bytes_of "$dir")
    if [ "$b" = "$last" ] && [ "$b" != 0 ]; then same=$((same + 1)); else same=0; fi
    last=$b
    [ $same -ge "$need" ] && return 0
  done
  return 1
}

versions() {
  {
    echo -e "tool\tversion"
    echo -e "kernel\t$(uname -r)"
    echo -e "python3\t$(python3 --version 2>&1 | cut -d' ' -f2) (sqlite3 module $(python3 -c 'import sqlite3;print(sqlite3.sqlite_version)'))"
    echo -e "sqlite3 CLI\t$(sqlite3 --version | cut -d' ' -f1-2)"
    for f in "$HERE"/methods/[a-z]*.sh; do
      m=$(basename "$f" .sh)
      if "$f" available 2>/dev/null; then echo -e "$m\t$("$f" version 2>&1 | head -1)"; else echo -e "$m\tnot installed"; fi
    done
    for t in gzip pigz zstd b3sum sha256sum hyperfine; do
      command -v $t >/dev/null && echo -e "$t\t$($t --version 2>&1 | head -1)"
    done
  } > "$RES/versions.tsv"
}

prepare_size() { # size -> creates $D/v0.db, $D/v1.db, refs, pagediff; rows for the app's own mutate
  local size=$1 mb; mb=$(size_mb "$size")
  D="$DATA/$size"; mkdir -p "$D"
  if [ ! -s "$D/v0.json" ] || [ ! -f "$D/v0.db" ]; then
    log "$size: generating ${mb} MiB database (seed $SEED)"
    timed t python3 "$HERE/gen_chat_db.py" --out "$D/v0.db" --size-mb "$mb" --seed "$SEED" --force
    python3 - "$D/v0.db" > "$D/v0.json" <<'EOF'
import sqlite3, sys, json, os
sys.path.insert(0, os.environ.get("HERE_BENCH", "."))
p = sys.argv[1]; con = sqlite3.connect(p)
import chatdb_common as C
print(json.dumps({"file_bytes": os.path.getsize(p), "counts": C.table_counts(con)}))
EOF
    row "$size" generator gen 1 "$t" "$(bytes_of "$D/v0.db")" 0
  fi
  if [ ! -s "$D/ref-v1.json" ] || [ ! -f "$D/v1.db" ]; then
    log "$size: app mutate baseline x$RUNS (no backup tool running)"
    for r in $(seq 1 "$RUNS"); do
      rm -f "$D/v1.db" "$D/v1.db-wal" "$D/v1.db-shm"
      cp "$D/v0.db" "$D/v1.db"
      timed t python3 "$HERE/mutate.py" --db "$D/v1.db" --seed "$SEED" --day 1
      row "$size" app mutate "$r" "$t" "$(bytes_of "$D/v1.db")" 0
    done
    python3 "$HERE/verify.py" "$D/v0.db" > "$D/ref-v0.json"
    python3 "$HERE/verify.py" "$D/v1.db" > "$D/ref-v1.json"
    sqlite3 "$D/v0.db" ".backup '$D/pd-v0.db'"; sqlite3 "$D/v1.db" ".backup '$D/pd-v1.db'"
    python3 "$HERE/pagediff.py" --json "$D/pd-v0.db" "$D/pd-v1.db" > "$D/pagediff.json"
    rm -f "$D/pd-v0.db" "$D/pd-v1.db"
  fi
  command -v fincore >/dev/null && fincore -b "$D/v0.db" "$D/v1.db" >> "$LOG" 2>&1
}

run_snapshot_method() { # size method
  local size=$1 m=$2 f="$HERE/methods/$2.sh" r t b0 b1 ok
  for r in $(seq 1 "$RUNS"); do
    export ST="$D/state/$m" STAGE="$D/stage/$m" OUT="$D/restore/$m/chat.db"
    rm -rf "$ST" "$STAGE" "$D/restore/$m"; mkdir -p "$ST" "$STAGE" "$D/restore/$m"
    if ! "$f" init >>"$LOG" 2>&1; then log "$m init failed"; row "$size" "$m" init "$r" "0 0 0 0 1" 0 0; return; fi
    b0=$(bytes_of "$ST/repo")
    export SRC="$D/v0.db" PHASE=full
    timed t "$f" backup; b1=$(bytes_of "$ST/repo")
    row "$size" "$m" full "$r" "$t" "$b1" $((b1 - b0))
    export SRC="$D/v1.db" PHASE=incr
    timed t "$f" backup; b0=$b1; b1=$(bytes_of "$ST/repo")
    row "$size" "$m" incr "$r" "$t" "$b1" $((b1 - b0))
    # A second backup of the same v1: what an unchanged app costs (scheduled backups of an idle app).
    export PHASE=same
    timed t "$f" backup; b0=$b1; b1=$(bytes_of "$ST/repo")
    row "$size" "$m" unchanged "$r" "$t" "$b1" $((b1 - b0))
    timed t "$f" restore
    row "$size" "$m" restore "$r" "$t" "$b1" 0 "restored=$(bytes_of "$OUT")"
  done
  verify_last "$size" "$m"
  rm -rf "$D/stage/$m"
}

# CPU ticks (user sys, in seconds) and peak RSS (KiB) of a running process, from /proc
proc_usage() {
  local pid=$1 hz; hz=$(getconf CLK_TCK)
  if [ -r "/proc/$pid/stat" ]; then
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f %.2f", $12/hz, $13/hz }' "/proc/$pid/stat"
    printf ' %s\n' "$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")"
  else echo "0 0 0"; fi
}

run_continuous_method() { # size method
  local size=$1 m=$2 f="$HERE/methods/$2.sh" r t b0 b1 b2 dpid tf extra
  local t0 t1 t2 lpid u1 s1 rss1 u2 s2 rss2 w1 w2
  for r in $(seq 1 "$RUNS"); do
    export ST="$D/state/$m" STAGE="$D/stage/$m" OUT="$D/restore/$m/chat.db"
    rm -rf "$ST" "$STAGE" "$D/restore/$m" "$D/live-$m"; mkdir -p "$ST" "$STAGE" "$D/restore/$m" "$D/live-$m"
    cp "$D/v0.db" "$D/live-$m/chat.db"
    export SRC="$D/live-$m/chat.db" PHASE=full
    "$f" init >>"$LOG" 2>&1 || { log "$m init failed"; return; }
    timed t "$f" backup; b0=$(bytes_of "$ST/repo")
    row "$size" "$m" full "$r" "$t" "$b0" "$b0"
    export PHASE=incr
    tf=$(mktemp)
    t0=$(date +%s.%N)
    /usr/bin/time -f '%e %U %S %M %x' -o "$tf" "$f" start >>"$LOG" 2>&1 &
    dpid=$!
    sleep 0.5; lpid=$(pgrep -P "$dpid" | head -1)
    wait_quiet "$ST/repo" 3 300 || log "$m: replica not quiet after start"
    t1=$(date +%s.%N); b1=$(bytes_of "$ST/repo")
    read -r u1 s1 rss1 <<< "$(proc_usage "$lpid")"
    # startup: daemon CPU and peak RSS until the replica went quiet (wall minus the 3 s quiet window)
    w1=$(echo "$t1 - $t0 - 3" | bc)
    row "$size" "$m" startup "$r" "$w1 $u1 $s1 $rss1 0" "$b1" $((b1 - b0)) "restart of the daemon after -once"
    timed t python3 "$HERE/mutate.py" --db "$SRC" --seed "$SEED" --day 1 ${MUTATE_ARGS:-}
    row "$size" "$m" "mutate-under-$m" "$r" "$t" "$b1" 0
    wait_quiet "$ST/repo" 3 300 || log "$m: replica not quiet after mutate"
    t2=$(date +%s.%N); b2=$(bytes_of "$ST/repo")
    read -r u2 s2 rss2 <<< "$(proc_usage "$lpid")"
    # incr: daemon CPU spent between startup-quiet and after-mutate-quiet; wall = from the start of
    # the day's writes until the replica was quiet again (minus the 3 s quiet window); RSS = peak so far
    w2=$(echo "$t2 - $t1 - 3" | bc)
    extra="local_state=$("$f" local-state 2>/dev/null || echo 0) wall=writes+catch-up"
    row "$size" "$m" incr "$r" "$w2 $(echo "$u2 - $u1" | bc) $(echo "$s2 - $s1" | bc) $rss2 0" "$b2" $((b2 - b1)) "$extra"
    kill -TERM "$lpid" 2>/dev/null; wait "$dpid" 2>/dev/null
    if [ "$r" = "$RUNS" ]; then
      # A tool may add its own tables to the source (litestream does), which shifts mutate.py's
      # size-based message count: the restore is checked against this live source itself.
      python3 "$HERE/verify.py" "$SRC" > "$D/ref-live-$m.json"
      find "$ST/repo" -type f -printf '%s\t%P\n' | sort -k2 > "$RES/$size-$m-repo-files.tsv"
    fi
    row "$size" "$m" daemon-lifetime "$r" "$(tail -1 "$tf")" "$b2" $((b2 - b0))
    rm -f "$tf"
    timed t "$f" restore
    row "$size" "$m" restore "$r" "$t" "$b2" 0 "restored=$(bytes_of "$OUT")"
  done
  verify_last "$size" "$m" "$D/ref-live-$m.json"
  rm -rf "$D/live-$m" "$D/stage/$m"
}

verify_last() { # size method [reference json]
  local size=$1 m=$2 ref=${3:-$D/ref-v1.json} v
  [ "$VERIFY" = 1 ] || return 0
  v=$(python3 "$HERE/verify.py" "$OUT" --ref "$ref" 2>&1 | tail -1)
  if [ $? -eq 0 ] && echo "$v" | grep -q '"ok": true'; then ok=yes; else ok=NO; fi
  printf '%s\t%s\t%s\t%s\n' "$size" "$m" "$ok" "$v" >> "$VTSV"
  log "$size $m verify: $ok"
  rm -rf "$D/restore/$m"
}

export HERE_BENCH="$HERE"
log "start: sizes=[$SIZES] runs=$RUNS methods=[$METHODS]"
versions
for size in $SIZES; do
  prepare_size "$size"
  for m in $METHODS; do
    f="$HERE/methods/$m.sh"
    if [ ! -x "$f" ]; then log "no method script $f"; continue; fi
    if ! "$f" available >/dev/null 2>&1; then
      log "$size $m: tool not installed, skipped"; row "$size" "$m" skipped 0 "0 0 0 0 0" 0 0 "not installed"; continue
    fi
    log "$size $m: $RUNS cycles"
    case "$("$f" kind)" in
      continuous) run_continuous_method "$size" "$m" ;;
      *)          run_snapshot_method "$size" "$m" ;;
    esac
    rm -rf "$D/state/$m"
  done
done
log "done; make the report with: python3 $HERE/report.py $RES"
