"""docker/Dockerfile agrees with what the compiled pipeline expects of the image.

No Docker engine runs here, so the image is not built in tests; this checks
the file against the code it must match (paths, pins, Keras switch).
"""
import re
import subprocess

import pytest

from conftest import REPO
from imgpipe.pipeline import kubeflow
from imgpipe.pipeline.config import KubeflowSection

DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def test_base_image_is_the_locked_tfx_and_pins_are_the_lock():
    locked = re.search(r"^tfx==(\S+)$", (REPO / "requirements.lock").read_text(), re.M).group(1)
    assert re.search(rf"^FROM gcr\.io/tfx-oss-public/tfx:{re.escape(locked)}$", DOCKERFILE, re.M)
    assert "pip install --no-cache-dir -c /tmp/requirements.lock /tmp/wheels/imgpipe-*.whl" in DOCKERFILE
    assert "pip check" in DOCKERFILE
    assert re.search(r"ENV TF_USE_LEGACY_KERAS=1\b", DOCKERFILE)


@pytest.mark.parametrize("name", ["Dockerfile", "serving.Dockerfile"])
def test_images_install_the_wheel_not_a_checkout(name):
    text = (REPO / "docker" / name).read_text()
    assert re.search(r"^COPY \. \.$", text, re.M) and "wheel --no-deps" in text
    assert not re.search(r"pip install[^\n]* (-e|--editable) ", text) and "/opt/imgpipe/src" not in text
    # Only the build stage sees sources: no room is copied into the final image.
    final_stage = text.split("\nFROM ")[-1]
    rooms = setup_rooms()
    assert not [line for line in final_stage.splitlines()
                if line.startswith("COPY ") and line.split()[1].split("/")[0] in rooms]


def setup_rooms():
    import ast
    tree = ast.parse((REPO / "setup.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == "ROOMS")


def test_build_context_keeps_every_packaged_file():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "runs", ".git"} <= ignored
    needed = {"imgpipe", "setup.py", "pyproject.toml", "README.md", "requirements.lock",
              "docker", *setup_rooms()}
    assert not needed & ignored


def test_image_tag_follows_the_one_version():
    from imgpipe import __version__
    assert KubeflowSection().image == f"imgpipe:{__version__}"
    dry_run = subprocess.run(["make", "-n", "image"], cwd=REPO, capture_output=True, text=True)
    assert f"-t imgpipe:{__version__} ." in dry_run.stdout
    assert f"ensure_quickstart('{kubeflow.IMAGE_QUICKSTART}')" in DOCKERFILE


SERVING = (REPO / "docker" / "serving.Dockerfile").read_text()


def test_serving_image_installs_only_what_serving_imports():
    import sys
    lock = {line.split("==")[0].lower().replace("_", "-")
            for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line}
    wanted = [line.split("==")[0].strip().lower() for line in
              (REPO / "docker" / "serving-requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert "tensorflow-cpu" in wanted
    assert set(wanted) - {"tensorflow-cpu"} <= lock    # pinned by the lock
    assert "FROM python:3.10-slim" in SERVING and "TF_USE_LEGACY_KERAS=1" in SERVING
    assert 'ENTRYPOINT ["imgpipe", "serve"' in SERVING
    # The serve path imports none of the pipeline's heavy libraries.
    probe = ("import sys, imgpipe; from imgpipe.pipeline import cli; "
             "from imgpipe.serving import app, model, predlog; "
             "from imgpipe.contract import image_ops; "
             "heavy = ('tfx', 'apache_beam', 'tensorflow_data_validation', 'tensorflow_transform', "
             "'tensorflow_model_analysis', 'mlflow', 'kfp', 'tfx_bsl'); "
             "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
