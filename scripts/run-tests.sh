#!/usr/bin/env bash
# The whole test suite, in the project's environment.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
