#!/usr/bin/env bash
# The whole test suite, in the project's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-postgres.sh  # the tests start their own PostgreSQL server
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
