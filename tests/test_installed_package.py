"""imgpipe as a user gets it: the wheel installed in a fresh virtualenv, used from their own project.

The wheel is built from this checkout and installed with `--no-deps` into a
new virtualenv outside it; the virtualenv borrows the already-installed,
locked dependencies through a plain path line (no .pth hooks of the
project's environment run, so its editable install of imgpipe is not seen).
Everything then runs from an empty folder: `imgpipe init`, `imgpipe run`,
`imgpipe schema infer`, `imgpipe compile --target kubeflow` with the
project's own schema, `imgpipe serve` over loopback HTTP.
"""
import base64
import json
import os
import site
import socket
import subprocess
import sys
import time
import zipfile

import httpx
import pytest
import yaml
from setuptools import find_packages

from conftest import REPO

pytestmark = pytest.mark.e2e


def _setup_packages():
    """What setup.py installs: imgpipe plus every room's packages."""
    import ast
    tree = ast.parse((REPO / "setup.py").read_text())
    rooms = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "ROOMS")
    return {"imgpipe"} | {f"imgpipe.{room}" + (f".{sub}" if sub else "")
                          for room in rooms for sub in ["", *find_packages(REPO / room)]}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder of a fresh virtualenv with the wheel, the wheel's path)."""
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(root / "dist"), str(REPO)], check=True)
    [wheel] = (root / "dist").glob("imgpipe-*.whl")
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [packages] = venv.glob("lib/python3.*/site-packages")
    # Dependencies from the locked environment, appended after the venv's own packages.
    (packages / "locked-dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True)
    return venv / "bin", wheel


def run(bin_dir, *args, cwd, check=True, timeout=900):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPIPE_", "MLFLOW_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    result = subprocess.run([str(bin_dir / "imgpipe"), *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_wheel_holds_every_package_and_its_data(installed):
    _, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    packages = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == _setup_packages()
    for data in ("imgpipe/schemas/quickstart.pbtxt", "imgpipe/schemas/cifar10.pbtxt",
                 "imgpipe/configs/quickstart.toml", "imgpipe/configs/cifar10.toml",
                 "imgpipe/configs/beam/dataflow.toml", "imgpipe/registry/migrations/script.py.mako",
                 "imgpipe/components/trainer/module_files/run.py"):
        assert data in names, data
    assert not [n for n in names if n.startswith(("tests/", "imgpipe/tests/", "bench/"))]


def test_a_new_project_runs_compiles_and_serves_with_its_own_schema(installed, tmp_path):
    bin_dir, _ = installed
    where = subprocess.run([str(bin_dir / "python"), "-c", "import imgpipe; print(imgpipe.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(bin_dir.parent)) and str(REPO) not in where

    created = run(bin_dir, "init", "my-project", cwd=tmp_path)
    project = tmp_path / "my-project"
    assert "wrote my-project/imgpipe.toml" in created.stdout
    assert (project / "schemas" / "quickstart.pbtxt").is_file()
    assert "runs/" in (project / ".gitignore").read_text()

    ran = run(bin_dir, "run", cwd=project)
    assert "\nBLESSED" in ran.stdout and "shapes-cnn version 1 (champion)" in ran.stdout, ran.stdout
    assert (project / "runs" / "registry.db").is_file()

    # The project's own curated schema: drafted from its data, then named in its config.
    run(bin_dir, "schema", "infer", "runs/datasets/quickstart", "--output", "schemas/shapes.pbtxt",
        cwd=project)
    mine = (project / "schemas" / "shapes.pbtxt").read_text()
    config = project / "imgpipe.toml"
    config.write_text(config.read_text().replace('"schemas/quickstart.pbtxt"', '"schemas/shapes.pbtxt"'))
    compiled = run(bin_dir, "compile", "--target", "kubeflow", "--output", "pipeline.yaml",
                   "--pipeline-root", "gs://acme-ml/imgpipe", "--image", "eu.gcr.io/acme/imgpipe:1",
                   cwd=project)
    assert "wrote pipeline.yaml" in compiled.stdout, compiled.stdout
    spec = next(yaml.safe_load_all((project / "pipeline.yaml").read_text()))
    settings = spec["root"]["dag"]["tasks"]["CuratedSchema"]["inputs"]["parameters"]["settings"]
    carried = json.loads(settings["runtimeValue"]["constant"])
    assert carried["schema_text"] == mine and carried["origin"] == "shapes.pbtxt"
    assert str(tmp_path) not in (project / "pipeline.yaml").read_text()

    _serve_and_predict(bin_dir, project)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve_and_predict(bin_dir, project):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPIPE_", "MLFLOW_"))}
    server = subprocess.Popen([str(bin_dir / "imgpipe"), "serve", "--port", str(port)], cwd=project,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("imgpipe serve did not answer /healthz within 120 s")
        image = next((project / "runs" / "datasets" / "quickstart" / "circle").glob("*.png"))
        answer = httpx.post(f"{url}/v1/models/shapes-cnn:predict", timeout=30, json={
            "instances": [{"b64": base64.b64encode(image.read_bytes()).decode()}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["class"] == "circle"
    finally:
        server.terminate()
        server.wait(timeout=30)
