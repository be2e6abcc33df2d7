"""docker/Dockerfile agrees with what the compiled pipeline expects of the image.

No Docker engine runs here, so the image is not built in tests; this checks
the file against the code it must match (paths, pins, Keras switch).
"""
import re

import tomli

from conftest import REPO
from imgpipe.pipeline import kubeflow
from imgpipe.pipeline.config import KubeflowSection

DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()


def test_base_image_is_the_locked_tfx_and_pins_are_the_lock():
    locked = re.search(r"^tfx==(\S+)$", (REPO / "requirements.lock").read_text(), re.M).group(1)
    assert re.search(rf"^FROM gcr\.io/tfx-oss-public/tfx:{re.escape(locked)}$", DOCKERFILE, re.M)
    assert "pip install --no-cache-dir -c requirements.lock ." in DOCKERFILE
    assert "pip check" in DOCKERFILE
    assert re.search(r"ENV TF_USE_LEGACY_KERAS=1\b", DOCKERFILE)


def test_every_installed_folder_is_copied():
    project = tomli.loads((REPO / "pyproject.toml").read_text())
    folders = {path.split("/")[0] for path in project["tool"]["setuptools"]["package-dir"].values()}
    for folder in folders:
        assert re.search(rf"^COPY {folder} \./{folder}$", DOCKERFILE, re.M), folder


def test_paths_the_compiled_pipeline_names_exist_in_the_image():
    assert f"COPY schemas {kubeflow.IMAGE_ROOT}/schemas" in DOCKERFILE
    assert f"ensure_quickstart('{kubeflow.IMAGE_QUICKSTART}')" in DOCKERFILE
    default_image = KubeflowSection().image
    assert re.search(rf"^IMAGE \?= {re.escape(default_image)}$",
                     (REPO / "Makefile").read_text(), re.M)


SERVING = (REPO / "docker" / "serving.Dockerfile").read_text()


def test_serving_image_installs_only_what_serving_imports():
    import subprocess
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
             "from imgpipe.components.image_example_gen import encoding, image_ops; "
             "heavy = ('tfx', 'apache_beam', 'tensorflow_data_validation', 'tensorflow_transform', "
             "'tensorflow_model_analysis', 'mlflow', 'kfp', 'tfx_bsl'); "
             "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(heavy)}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
