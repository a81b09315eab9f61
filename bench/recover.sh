#!/usr/bin/env bash
# Bare-machine recovery time (issue 12 item 11): an app made of the 1 GiB chat database, 50 MB
# of uploads and a secret is backed up to S3 (a moto server on 127.0.0.1, started and stopped
# here), then `lifeboat recover` runs as on a new machine (no config, empty cache, no state)
# into --root, twice: the first recovery runs SQLite's integrity_check (and records a proof),
# the second finds the proof and skips it (pages still authenticated, checksum compared).
# Prints one line per run with its wall seconds.
#
# Usage: bench/recover.sh [DB]     (default $LBBENCH_DIR/large/v0.db, see bench/README.md)
#   LIFEBOAT=path/to/lifeboat (default target/release/lifeboat)
set -euo pipefail
cd "$(dirname "$0")/.."
L=$(realpath "${LIFEBOAT:-target/release/lifeboat}")
DB=${1:-${LBBENCH_DIR:-/tmp/lbbench}/large/v0.db}
W=$(mktemp -d /tmp/lb-recover.XXXXXX)
export MOTO_PORT=${MOTO_PORT:-53991} MOTO_DIR=$W/moto S3_BUCKET=recover
eval "$(bash scripts/services/moto.sh start)"
trap 'MOTO_DIR=$W/moto bash scripts/services/moto.sh stop >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
export AWS_ENDPOINT_URL=$S3_ENDPOINT LIFEBOAT_PASSWORD=bench-password
export LIFEBOAT_CACHE_DIR=$W/cache-a LIFEBOAT_STATE_DIR=$W/state-a

mkdir -p "$W/srv/chat/uploads" "$W/a"
cp "$DB" "$W/srv/chat/chat.db"
for i in $(seq 1 200); do head -c 262144 /dev/urandom > "$W/srv/chat/uploads/f$i.bin"; done
printf 'JWT_SECRET=%s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$W/srv/chat/.env"
chmod 600 "$W/srv/chat/.env"
cat > "$W/a/lifeboat.toml" <<TOML
[repository.main]
path = "s3://$S3_BUCKET/lb"

[app.chat]
sqlite = ["$W/srv/chat/chat.db"]
files = ["$W/srv/chat/uploads"]
secrets = ["$W/srv/chat/.env"]
TOML
chmod 644 "$W/a/lifeboat.toml"
"$L" -c "$W/a/lifeboat.toml" init >/dev/null
"$L" -c "$W/a/lifeboat.toml" backup chat >/dev/null
size=$(du -sb "$W/srv/chat" | cut -f1)
rm -rf "$W/srv"

for run in first proven; do
  rm -rf "$W/root" "$W/cache-b" "$W/state-b"
  export LIFEBOAT_CACHE_DIR=$W/cache-b LIFEBOAT_STATE_DIR=$W/state-b
  start=$(date +%s.%N)
  (cd "$W" && "$L" --repo "s3://$S3_BUCKET/lb" recover --root "$W/root" >/dev/null)
  end=$(date +%s.%N)
  cmp "$DB" "$W/root$W/srv/chat/chat.db"
  echo "recover app_bytes=$size run=$run seconds=$(awk "BEGIN{printf \"%.1f\", $end - $start}")"
done
