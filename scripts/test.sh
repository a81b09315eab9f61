#!/usr/bin/env bash
# The whole test suite, with the real services it needs: an S3 server (moto) bound to
# 127.0.0.1 is started here, `cargo nextest run --workspace` runs against it, and everything
# started is stopped by pid on exit. README's test command; .ci/run calls exactly this.
#   bash scripts/test.sh                 # all tests
#   bash scripts/test.sh -E 'test(s3)'   # extra arguments go to nextest
# Tests that need a service fail (they never pass silently) when its variables are missing;
# LIFEBOAT_TEST_NO_SERVICES=1 makes them return early instead, for a quick run without it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
S="$ROOT/scripts/services"
export MOTO_DIR="${MOTO_DIR:-/tmp/lifeboat-test-moto}"
export MOTO_PORT="${MOTO_PORT:-53950}"
cleanup() { bash "$S/moto.sh" stop || true; }
trap cleanup EXIT
eval "$(bash "$S/moto.sh" start)"
export LIFEBOAT_TEST_S3_ENDPOINT="$S3_ENDPOINT" LIFEBOAT_TEST_S3_BUCKET="$S3_BUCKET"
cd "$ROOT"
cargo nextest run --workspace "$@"
