#!/usr/bin/env bash
# lifeboat, restoring with --verify quick (PRAGMA quick_check instead of integrity_check).
LIFEBOAT_VERIFY=quick exec "$(dirname "$0")/lifeboat.sh" "$@"
