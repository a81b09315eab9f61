#!/usr/bin/env bash
# One command: build lifeboat (release), run it and every installed peer on the same generated
# databases in one run, measure the machine's raw limits, and write the tables.
#   bench/run.sh                         # small (100 MiB) + large (1 GiB), 3 cycles each (~45 min)
#   SIZES=small RUNS=1 bench/run.sh      # quick look
# Results: $LBBENCH_DIR/results (default /tmp/lbbench/results), tables in results/tables.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export LBBENCH_DIR="${LBBENCH_DIR:-/tmp/lbbench}"
RES="${RESULTS:-$LBBENCH_DIR/results}"
(cd "$ROOT" && cargo build --release --quiet)
export LIFEBOAT="$ROOT/target/release/lifeboat"
if [ "${KEEP_RESULTS:-0}" != 1 ]; then rm -rf "$RES"; fi
mkdir -p "$RES"
export METHODS="${METHODS:-copy gzip pigz zstd vacuum restic rustic borg-lz4 borg-zstd litestream lifeboat lifeboat-quick}"
bash "$HERE/run_peers.sh"
if command -v hyperfine >/dev/null && [ -f "$LBBENCH_DIR/large/v0.db" ]; then bash "$HERE/raw_limits.sh" || true; fi
{
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%Y-%m-%d)"
  echo
  python3 "$HERE/report.py" "$RES"
} > "$RES/tables.md"
echo "tables: $RES/tables.md"
