#!/usr/bin/env bash
# Daemon overhead (issue 13): `lifeboat run` with five apps configured, measured while nothing
# is due: CPU time it used (utime + stime from /proc), resident memory (VmRSS, VmHWM), and the
# system calls it made (strace -c -f on the running process), network ones separately (each
# storage request needs a connect/sendto/write on a socket; an idle daemon must make none).
#
#   LIFEBOAT=target/release/lifeboat WINDOW=600 bench/daemon_idle.sh
#   EVERY=2m ...   # the watcher's looks ([alerts] every; default 15m as in the product)
#
# The apps' jobs ran just before (the state file says so), as after a normal start, so the
# window is what an idle hour looks like: the daemon sleeps until the next slot (daily), with
# a safety wake-up every 5 minutes. Results on stdout and in $OUT/summary.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
LIFEBOAT="${LIFEBOAT:-$HERE/../target/release/lifeboat}"
WINDOW="${WINDOW:-600}"
OUT="${OUT:-/tmp/lifeboat-daemon-idle}"
rm -rf "$OUT"; mkdir -p "$OUT"
export LIFEBOAT_PASSWORD=bench LIFEBOAT_STATE_DIR="$OUT/state"
"$LIFEBOAT" --repo "$OUT/repo" init --kdf-memory-mib 8 >/dev/null
cfg="$OUT/lifeboat.toml"
EVERY="${EVERY:-15m}"
# listen on a free port: the default one may be taken on a shared machine.
printf '[repository.main]\npath = "%s"\n[daemon]\nstate_file = "%s/daemon-state.json"\nlisten = "127.0.0.1:0"\n[alerts]\nevery = "%s"\n' "$OUT/repo" "$OUT" "$EVERY" > "$cfg"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
jobs=""
for i in 1 2 3 4 5; do
  mkdir -p "$OUT/app$i"
  python3 - "$OUT/app$i/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("pragma journal_mode=wal")
c.execute("create table t(x)"); c.executemany("insert into t values (?)", [(i,) for i in range(1000)]); c.commit()
PY
  echo "x$i" > "$OUT/app$i/config.toml"
  printf '[app.app%s]\nsqlite = ["%s"]\nconfig = ["%s"]\nschedule = "daily"\nforget_schedule = "daily"\n[app.app%s.keep]\ndaily = 7\n' \
    "$i" "$OUT/app$i/app.db" "$OUT/app$i/config.toml" "$i" >> "$cfg"
  for k in backup forget; do
    jobs="$jobs\"app$i/$k\": {\"last_start\": \"$now\", \"last_end\": \"$now\", \"outcome\": \"ok\", \"failures\": 0, \"runs\": 1},"
  done
done
echo "{\"version\": 1, \"jobs\": {${jobs%,}}}" > "$OUT/daemon-state.json"
"$LIFEBOAT" -c "$cfg" schedule > "$OUT/schedule.txt"
"$LIFEBOAT" -c "$cfg" run 2> "$OUT/run.log" &
pid=$!
sleep 3
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
c0=$(cpu)
if command -v strace >/dev/null; then
  timeout -s INT "$WINDOW" strace -c -f -p "$pid" -o "$OUT/strace.txt" 2>/dev/null || true
else
  sleep "$WINDOW"
fi
c1=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -TERM "$pid"; wait "$pid" || true
net=0
if [ -f "$OUT/strace.txt" ]; then
  net=$(awk '$NF ~ /^(connect|sendto|sendmsg|recvfrom|recvmsg)$/ {n += $4} END {print n + 0}' "$OUT/strace.txt")
  # strace prints nothing at all when the process made no system call.
  calls=$(awk '$NF == "total" {print $4}' "$OUT/strace.txt" | tail -1)
  calls=${calls:-0}
fi
cpu_ms=$(( (c1 - c0) * 1000 / ticks ))
{
  echo "| measure | value |"
  echo "|---|---|"
  echo "| apps configured (10 jobs: backup and forget daily; none due) | 5 |"
  echo "| window | ${WINDOW} s |"
  echo "| watcher looks in the window ([alerts] every = $EVERY) | $(( ${WINDOW} / $(echo "$EVERY" | sed 's/m$/*60/;s/s$//;s/h$/*3600/' | bc) )) |"
  echo "| CPU used in the window (utime+stime) | ${cpu_ms} ms |"
  echo "| system calls in the window (all threads) | ${calls:-n/a} |"
  echo "| network system calls (connect/send/recv) | ${net} |"
  echo "| RSS at the end | $((rss / 1024)) MiB ($rss KiB) |"
  echo "| peak RSS (VmHWM) | $((hwm / 1024)) MiB ($hwm KiB) |"
} | tee "$OUT/summary.md"
grep -c "job started" "$OUT/run.log" | sed 's/^/jobs started during the run: /'
