#!/usr/bin/env bash
# The whole test suite, with the real services it needs: two S3 servers (moto; the second
# checks signatures, for wrong-credential tests), an OpenSSH sshd for SFTP (installed with
# apt-get when missing) and a PostgreSQL server (initdb in /tmp, run as user postgres; apt-get
# when missing), all bound to 127.0.0.1, are started here, `cargo nextest run --workspace` runs against it (with
# the test-only `lifeboat/fault-injection` feature the kill-point tests need), and everything
# started is stopped by pid on exit. README's test command; .ci/run calls exactly this.
#   bash scripts/test.sh                 # all tests
#   bash scripts/test.sh -E 'test(s3)'   # extra arguments go to nextest
# Tests that need a service fail (they never pass silently) when its variables are missing;
# LIFEBOAT_TEST_NO_SERVICES=1 makes them return early instead, for a quick run without it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
S="$ROOT/scripts/services"
# The first port from $1 on that nothing listens on (the machine is shared: a fixed port may
# be taken, which once failed a run with "Address already in use").
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
export MOTO_DIR="${MOTO_DIR:-/tmp/lifeboat-test-moto}"
export MOTO_PORT="${MOTO_PORT:-$(free_port 53950)}"
export SFTP_DIR="${SFTP_DIR:-/tmp/lifeboat-test-sftp}"
export SFTP_PORT="${SFTP_PORT:-$(free_port 52222)}"
export PG_DIR="${PG_DIR:-/tmp/lifeboat-test-pg}"
export PG_PORT="${PG_PORT:-$(free_port 55432)}"
AUTH_DIR="$MOTO_DIR-auth" AUTH_PORT=$(free_port $((MOTO_PORT + 1)))
cleanup() {
  bash "$S/moto.sh" stop || true
  MOTO_DIR="$AUTH_DIR" bash "$S/moto.sh" stop || true
  bash "$S/sftp.sh" stop || true
  bash "$S/pg.sh" stop || true
}
trap cleanup EXIT
eval "$(bash "$S/pg.sh" start)"
# Tests get the server as a URL (never PG* variables, so nothing leaks into other tests).
export LIFEBOAT_TEST_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT" LIFEBOAT_TEST_PG_BIN="$PG_BIN"
unset PGHOST PGPORT PGUSER PGDATABASE
eval "$(bash "$S/sftp.sh" start)"
export LIFEBOAT_TEST_SFTP_HOST="$SFTP_HOST" LIFEBOAT_TEST_SFTP_PORT="$SFTP_PORT" \
  LIFEBOAT_TEST_SFTP_USER="$SFTP_USER" LIFEBOAT_TEST_SFTP_KEY="$SFTP_KEY" \
  LIFEBOAT_TEST_SFTP_KNOWN_HOSTS="$SFTP_KNOWN_HOSTS" LIFEBOAT_TEST_SFTP_HOME="$SFTP_HOME"
eval "$(MOTO_DIR="$AUTH_DIR" MOTO_PORT="$AUTH_PORT" MOTO_AUTH=1 bash "$S/moto.sh" start)"
export LIFEBOAT_TEST_S3_AUTH_ENDPOINT="$S3_ENDPOINT" LIFEBOAT_TEST_S3_AUTH_KEY="$AWS_ACCESS_KEY_ID" \
  LIFEBOAT_TEST_S3_AUTH_SECRET="$AWS_SECRET_ACCESS_KEY"
eval "$(bash "$S/moto.sh" start)"
export LIFEBOAT_TEST_S3_ENDPOINT="$S3_ENDPOINT" LIFEBOAT_TEST_S3_BUCKET="$S3_BUCKET"
# The reference parser of the Prometheus text format (Python's prometheus_client), for the
# metrics tests: the machine's python3 when it has it, else installed (pip, then a venv).
PROM_PY=$(command -v python3)
if ! "$PROM_PY" -c 'import prometheus_client' 2>/dev/null; then
  python3 -m pip install -q 'prometheus_client>=0.20,<1' >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages 'prometheus_client>=0.20,<1' >/dev/null 2>&1 \
    || { python3 -m venv /tmp/lifeboat-test-prom && /tmp/lifeboat-test-prom/bin/pip install -q 'prometheus_client>=0.20,<1' \
         && PROM_PY=/tmp/lifeboat-test-prom/bin/python; }
  "$PROM_PY" -c 'import prometheus_client' || { echo "test.sh: cannot install prometheus_client" >&2; exit 1; }
fi
export LIFEBOAT_TEST_PROM_PY="$PROM_PY"
cd "$ROOT"
cargo nextest run --workspace --features lifeboat/fault-injection "$@"
# nextest does not run doctests; core's compile_fail doctests prove no point can be written
# without a session (crates/core/src/session.rs). Only on a full run (no nextest filter).
if [ $# -eq 0 ]; then cargo test --doc --workspace; fi
# The deployment examples (docs/deploy): structure, and the example configs load (cheap; no
# docker build). Only on a full run.
if [ $# -eq 0 ]; then bash "$ROOT/scripts/check-deploy.sh"; fi
