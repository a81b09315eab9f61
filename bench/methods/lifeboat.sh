#!/usr/bin/env bash
# lifeboat: snapshot method driving the real CLI.
#   backup  : a hot, page-level backup of the live WAL database $SRC into $ST/repo
#   restore : the latest point, verified by lifeboat (checksum, integrity_check, row counts), to $OUT
# LIFEBOAT may point at a binary (default: target/release/lifeboat of this checkout, else PATH).
. "$(dirname "$0")/_lib.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
if [ -z "${LIFEBOAT:-}" ]; then
  if [ -x "$ROOT/target/release/lifeboat" ]; then LIFEBOAT="$ROOT/target/release/lifeboat"; else LIFEBOAT=lifeboat; fi
fi
export LIFEBOAT_PASSWORD="$PASSWORD"
case "$1" in
  kind)      echo snapshot ;;
  available) command -v "$LIFEBOAT" >/dev/null ;;
  version)   "$LIFEBOAT" --version ;;
  init)      "$LIFEBOAT" --repo "$ST/repo" init ;;
  backup)    "$LIFEBOAT" --repo "$ST/repo" backup --name chat "$SRC" ;;
  restore)   "$LIFEBOAT" --repo "$ST/repo" restore chat latest --verify "${LIFEBOAT_VERIFY:-full}" -o "$OUT" ;;
esac
