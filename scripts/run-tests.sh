#!/usr/bin/env bash
# The test suite, in the project's environment. Extra arguments go to pytest.
#   scripts/run-tests.sh [ARGS]         everything, as CI runs it (`make test`); makes sure
#                                       the PostgreSQL server binaries are installed first
#   scripts/run-tests.sh --fast [ARGS]  `make test-fast`: no Beam pipeline, no PostgreSQL
#                                       (-m "not e2e and not postgres and not faults"); installs nothing
set -euo pipefail
cd "$(dirname "$0")/.."
python="${VENV:-.venv}/bin/python"
if [ "${1:-}" = --fast ]; then
  shift
  # A test that still asks for the PostgreSQL fixtures fails (tests/conftest.py)
  # instead of starting a server: it lacks its `postgres` marker.
  export IMGPIPE_TESTS_NO_POSTGRES=1
  exec "$python" -m pytest -m "not e2e and not postgres and not faults" "$@"
fi
bash scripts/ensure-postgres.sh  # the `postgres` tests start their own PostgreSQL server
exec "$python" -m pytest "$@"
