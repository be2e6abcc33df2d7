#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, pg_ctl) are present, so the
# test suite can start its own throwaway server (tests/postgres_server.py).
# Idempotent; installs Debian's `postgresql` package only when they are missing.
set -euo pipefail

find_initdb() {
  if [ -n "${IMGPIPE_PG_BIN:-}" ] && [ -x "$IMGPIPE_PG_BIN/initdb" ]; then
    echo "$IMGPIPE_PG_BIN/initdb"; return
  fi
  { ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null || true; } | sort -V | tail -n 1
}

initdb="$(find_initdb)"
if [ -z "$initdb" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    sudo=(missing)
  fi
  if [ "${sudo[*]}" = missing ] || ! command -v apt-get >/dev/null 2>&1; then
    cat >&2 <<'MSG'
error: PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb).
  Install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`),
  or point IMGPIPE_PG_BIN at a directory holding initdb and pg_ctl.
MSG
    exit 1
  fi
  echo "PostgreSQL server binaries missing; installing Debian's postgresql package" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends postgresql
  initdb="$(find_initdb)"
  if [ -z "$initdb" ]; then
    echo "error: installed postgresql but still no /usr/lib/postgresql/*/bin/initdb" >&2
    exit 1
  fi
fi

# initdb refuses to run as root, so as root the tests run it as `postgres`.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home postgres
  echo "created system user postgres" >&2
fi

echo "PostgreSQL: using $initdb"
