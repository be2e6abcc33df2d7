"""Serving depends on the image contract and the registry, nothing else of imgpipe:
the serving image and process stay free of the pipeline and its components."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterable, List

import pytest

SERVING = Path(__file__).resolve().parents[1] / "serving"
ALLOWED = ("imgpipe.contract", "imgpipe.registry", "imgpipe.serving")
ALLOWED_AT_RUNTIME = ALLOWED + ("imgpipe._environment",)   # imported by imgpipe itself


def outside(modules: Iterable[str], allowed=ALLOWED) -> List[str]:
    """The imgpipe modules among `modules` that are neither imgpipe nor under `allowed`."""
    return sorted(name for name in modules
                  if name.split(".")[0] == "imgpipe" and name != "imgpipe"
                  and not any(name == room or name.startswith(room + ".") for room in allowed))


def imported_modules(source: str, package: str) -> List[str]:
    """Every module an import statement of `source` names, function-level ones
    included, relative ones resolved against `package`. For `from X import Y`
    the names X.Y count, as Y may be a submodule; dunder attributes do not."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names
                      if not alias.name.startswith("__") and alias.name != "*"]
    return names


def test_the_static_check_sees_every_kind_of_forbidden_import():
    source = ("import imgpipe.pipeline.cli\n"
              "from imgpipe import components, __version__\n"
              "from imgpipe.contract import FEATURES\n"
              "def lazy():\n"
              "    from ..components.validation_gate import inprocess\n"
              "    from . import model\n")
    assert outside(imported_modules(source, "imgpipe.serving")) == [
        "imgpipe.components", "imgpipe.components.validation_gate",
        "imgpipe.components.validation_gate.inprocess", "imgpipe.pipeline.cli"]
    assert outside(["imgpipe", "imgpipe.contract.FEATURES", "imgpipe.serving.model",
                    "imgpipe.registryx", "numpy"]) == ["imgpipe.registryx"]


def test_serving_source_imports_only_the_contract_and_the_registry():
    files = sorted(SERVING.rglob("*.py"))
    assert SERVING / "app.py" in files
    found = {}
    for path in files:
        parts = path.relative_to(SERVING.parent).with_suffix("").parts
        package = ".".join(("imgpipe",) + parts[:-1])   # the package its relative imports use
        forbidden = outside(imported_modules(path.read_text(), package))
        if forbidden:
            found[str(path.relative_to(SERVING.parent))] = forbidden
    assert found == {}, f"serving imports from imgpipe beyond contract and registry: {found}"


# Imports every module of imgpipe.serving, then lists the imgpipe modules loaded.
PROBE = """
import importlib, json, pkgutil, sys
import imgpipe.serving
failed = []
for module in pkgutil.walk_packages(imgpipe.serving.__path__, "imgpipe.serving.",
                                    onerror=failed.append):
    importlib.import_module(module.name)
assert not failed, failed
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "imgpipe")))
"""


@pytest.fixture(scope="module")
def loaded_by_serving() -> List[str]:
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout.strip().splitlines()[-1])


def test_importing_all_of_serving_loads_only_the_contract_and_the_registry(loaded_by_serving):
    modules = [path.stem for path in SERVING.glob("*.py") if path.stem != "__init__"]
    assert {f"imgpipe.serving.{stem}" for stem in modules} <= set(loaded_by_serving)
    assert outside(loaded_by_serving, ALLOWED_AT_RUNTIME) == []


def test_request_parsing_imports_no_web_framework():
    probe = ("import sys, imgpipe.serving.parsing; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('fastapi', 'starlette', 'uvicorn')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
