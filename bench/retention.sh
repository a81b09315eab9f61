#!/usr/bin/env bash
# Retention at scale (issue 7): DAYS daily points of the 100 MiB chat database (each day one
# bench/mutate.py day of activity, recorded with a synthetic capture time), then forget to a
# 7 daily / 4 weekly / 12 monthly policy, prune (time and peak RSS), check --read-data, and a
# restore of every kept point. Figures go to $OUT (default $LBBENCH_DIR/retention/results.txt).
#   bench/retention.sh                  # 400 days (~10 min on 2 cores)
#   DAYS=60 bench/retention.sh          # quick look
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export LBBENCH_DIR="${LBBENCH_DIR:-/tmp/lbbench}"
DAYS="${DAYS:-400}"
DIR="$LBBENCH_DIR/retention"
OUT="${OUT:-$DIR/results.txt}"
(cd "$ROOT" && cargo build --release --quiet)
L="$ROOT/target/release/lifeboat"
SRC="$LBBENCH_DIR/small/v0.db"
if [ ! -f "$SRC" ]; then
  mkdir -p "$LBBENCH_DIR/small"
  python3 "$HERE/gen_chat_db.py" --out "$SRC" --size-mb 100 --seed 1
fi
rm -rf "$DIR"; mkdir -p "$DIR"
cp "$SRC" "$DIR/chat.db"
export LIFEBOAT_PASSWORD=bench-not-secret
unset LIFEBOAT_CONFIG
cd "$DIR"   # no lifeboat.toml here
R=(--repo "$DIR/repo")
"$L" "${R[@]}" init --kdf-memory-mib 16 >/dev/null
t0=$(date +%s)
for d in $(seq 1 "$DAYS"); do
  python3 "$HERE/mutate.py" --db "$DIR/chat.db" --seed 1 --day "$d" --pct 0.3 --batch 50 >/dev/null
  "$L" "${R[@]}" backup --name chat "$DIR/chat.db" --tag scheduled \
    --point-time "$(date -u -d "2025-01-01 +$d days" +%Y-%m-%dT03:00:00Z)" >/dev/null
done
t1=$(date +%s)
before=$(du -sb "$DIR/repo" | cut -f1)
points_before=$("$L" "${R[@]}" points --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
/usr/bin/time -f "%e %M" -o "$DIR/forget.time" "$L" "${R[@]}" forget chat \
  --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --timezone UTC > "$DIR/forget.out"
/usr/bin/time -f "%e %M" -o "$DIR/prune.time" "$L" "${R[@]}" prune > "$DIR/prune.out"
after=$(du -sb "$DIR/repo" | cut -f1)
/usr/bin/time -f "%e %M" -o "$DIR/check.time" "$L" "${R[@]}" check --read-data > "$DIR/check.out"
ids=$("$L" "${R[@]}" points --json | python3 -c 'import json,sys; print(" ".join(p["id"][:16] for p in json.load(sys.stdin)))')
n=0
for id in $ids; do
  rm -rf "$DIR/restore"
  "$L" "${R[@]}" restore "$id" --to "$DIR/restore" --verify quick >/dev/null
  n=$((n + 1))
done
rm -rf "$DIR/restore"
{
  echo "machine: $(nproc) cores, $(date -u +%Y-%m-%d), $DAYS days of the 100 MiB chat database"
  echo "backups: $points_before points in $((t1 - t0)) s (mutate.py included); repository $before bytes"
  echo "forget 7d/4w/12m: $(tail -1 "$DIR/forget.out"); time s / peak KiB: $(cat "$DIR/forget.time")"
  echo "prune: time s / peak KiB: $(cat "$DIR/prune.time")"
  sed 's/^/  /' "$DIR/prune.out"
  echo "repository after prune: $after bytes ($(python3 -c "print(f'{$after/$before:.3f}')") of before)"
  echo "check --read-data: $(tail -1 "$DIR/check.out"); time s / peak KiB: $(cat "$DIR/check.time")"
  echo "restored and verified every kept point: $n"
} | tee "$OUT"
