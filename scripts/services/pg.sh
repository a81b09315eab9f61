#!/usr/bin/env bash
# Throwaway PostgreSQL cluster on 127.0.0.1 for tests (from ../shared/reference/services/pg.sh;
# lifeboat's copy adds a password-checked role for the wrong-password tests and a stop that
# kills the postmaster by pid when pg_ctl cannot).
#   pg.sh start   -> initdb + start; prints export lines (eval "$(pg.sh start)")
#   pg.sh stop    -> fast shutdown + rm -rf the state dir
#   pg.sh env     -> print export lines again
# Env knobs: PG_PORT (default 55432), PG_DIR (default /tmp/lifeboat-pg),
#            PG_VERSION (default: newest in /usr/lib/postgresql), PG_USER_OS (default postgres)
# Runs the server as a non-root OS user (initdb/postgres refuse root); clients may run as root
# because they connect over TCP with trust auth (-h 127.0.0.1 -U postgres).
set -euo pipefail

PG_PORT=${PG_PORT:-55432}
PG_DIR=${PG_DIR:-/tmp/lifeboat-pg}
PG_USER_OS=${PG_USER_OS:-postgres}

log() { echo "pg.sh: $*" >&2; }

ensure_installed() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    log "installing postgresql from apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # (postinst also creates a 'main' cluster on 5432; harmless, we use our own dir+port)
    apt-get install -y -qq --no-install-recommends postgresql postgresql-client >&2
  fi
  PG_VERSION=${PG_VERSION:-$(ls /usr/lib/postgresql | sort -n | tail -1)}
  PGBIN=/usr/lib/postgresql/$PG_VERSION/bin
  if ! id "$PG_USER_OS" >/dev/null 2>&1; then
    useradd --system --home-dir "$PG_DIR" --shell /bin/bash "$PG_USER_OS"
  fi
}

as_pg() {
  # cd first: runuser keeps root's cwd (/root is 0700) -> 'could not change directory' warnings
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$PG_USER_OS" -- "$@"); else "$@"; fi
}

print_env() {
  cat <<EOF
export PGHOST=127.0.0.1
export PGPORT=$PG_PORT
export PGUSER=postgres
export PGDATABASE=postgres
export PG_BIN=$PGBIN
export PATH=$PGBIN:\$PATH
EOF
}

start() {
  exec 3>&1 1>&2   # only the export lines may reach stdout (callers eval it)
  ensure_installed
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then log "already running in $PG_DIR"; print_env >&3; return; fi
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR/data" "$PG_DIR/sock"
  chown -R "$PG_USER_OS" "$PG_DIR"
  chmod 700 "$PG_DIR/data"
  # --no-locale/UTF8: don't depend on the CI's LANG; -N: no fsync during initdb (throwaway)
  as_pg env LC_ALL=C "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
      --encoding=UTF8 --no-locale -N >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
  # Role lbpass must log in with its password (scram) over TCP; everyone else is trusted.
  { echo "host all lbpass 127.0.0.1/32 scram-sha-256"; cat "$PG_DIR/data/pg_hba.conf"; } \
    >"$PG_DIR/hba.tmp" && mv "$PG_DIR/hba.tmp" "$PG_DIR/data/pg_hba.conf"
  chown "$PG_USER_OS" "$PG_DIR/data/pg_hba.conf"
  # 3>&-: the postmaster must not inherit our stdout copy, or eval "$(pg.sh start)" never returns.
  # Own socket dir (not /var/run/postgresql, which may be missing or root-owned on a fresh box);
  # fsync off etc. because data is disposable.
  as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR/sock \
     -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50 \
     -c shared_buffers=64MB" 3>&- \
    || { cat "$PG_DIR/server.log" >&2; exit 1; }
  "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE lbpass LOGIN SUPERUSER PASSWORD 'lbpass-secret'" >&2
  print_env >&3
}

stop() {
  ensure_installed
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    local pid; pid=$(head -1 "$PG_DIR/data/postmaster.pid")
    as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >&2 \
      || kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$PG_DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) ensure_installed; print_env ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
