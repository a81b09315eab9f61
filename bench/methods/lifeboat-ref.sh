#!/usr/bin/env bash
# lifeboat at another build, for before/after tables in one run: LIFEBOAT_REF=/path/to/an/older
# or newer lifeboat binary (e.g. built from an earlier commit in a separate worktree with its own
# target dir). Skipped (not available) when LIFEBOAT_REF is unset.
if [ -z "${LIFEBOAT_REF:-}" ]; then
  [ "$1" = available ] && exit 1
  echo "LIFEBOAT_REF is not set" >&2; exit 2
fi
LIFEBOAT="$LIFEBOAT_REF" exec "$(dirname "$0")/lifeboat.sh" "$@"
