#!/usr/bin/env bash
# Creates the project's virtual environment (Python 3.10) and installs the
# pinned stack from requirements.lock. Idempotent; `make` calls it when
# pyproject.toml or requirements.lock changed.
set -euo pipefail
VENV="${1:-.venv}"
cd "$(dirname "$0")/.."

python_ok() {  # Python 3.10 (what requirements.lock is resolved for) and that runs
  "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1
}

find_python() {
  if [ -n "${PYTHON:-}" ]; then
    if python_ok "$PYTHON"; then echo "$PYTHON"; return; fi
    echo "error: PYTHON=$PYTHON is not a working Python 3.10" >&2; exit 1
  fi
  if command -v python3.10 >/dev/null 2>&1 && python_ok python3.10; then
    command -v python3.10; return
  fi
  # pyenv's shims fail when 3.10 is installed but not the selected version.
  if command -v pyenv >/dev/null 2>&1; then
    for candidate in "$(pyenv root)"/versions/3.10.*/bin/python3.10; do
      if [ -x "$candidate" ] && python_ok "$candidate"; then echo "$candidate"; return; fi
    done
  fi
  cat >&2 <<'MSG'
error: no Python 3.10 found. TFX 1.16 needs Python 3.9-3.10, and requirements.lock is resolved for 3.10.
  Install one (e.g. `pyenv install 3.10.13`, or your distribution's python3.10
  package) and run again, or point to it: make PYTHON=/path/to/python3.10
MSG
  exit 1
}

if [ -x "$VENV/bin/python" ] && ! python_ok "$VENV/bin/python"; then
  echo "bootstrap: $VENV has the wrong Python version; recreating it" >&2
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)"
  echo "bootstrap: creating $VENV with $PY ($("$PY" --version 2>&1))"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24" "setuptools>=68" wheel
echo "bootstrap: installing the pinned stack (requirements.lock); a first install takes a few minutes"
"$VENV/bin/python" -m pip install --quiet -c requirements.lock -e ".[dev]"
"$VENV/bin/python" -m pip check
touch "$VENV/.imgpipe-installed"
