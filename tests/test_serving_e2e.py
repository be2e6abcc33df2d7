"""After a real pipeline run: predict agrees with what was evaluated; monitor
stays quiet on clean traffic but fires on class-skewed and darkened traffic;
the preprocessing contract is the same in the SavedModel, the registry and
the server."""
import glob
import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from conftest import REPO, shapes_tree
from imgpipe.contract import FEATURES
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e
CONFIG = REPO / "configs" / "quickstart.toml"


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    # 150 per class: a model good enough (0.87) that clean traffic is clearly clean.
    # Warm light (red above blue, as in most photos): a channel swap is visible.
    data = shapes_tree(root / "data", per_class=150, seed=8, transform=warm)
    out = root / "out"
    result = invoke("run", "--config", CONFIG, "--data", data, "--output-root", out,
                    "--set", "training.epochs=25", "--set", "evaluation.f1_floor=0.25",
                    "--set", "evaluation.accuracy_floor=0.25")
    assert result.exit_code == 0, result.output
    pipeline = out / "pipelines" / "imgpipe-quickstart"
    examples = max((pipeline / "ImageExampleGen" / "examples").iterdir(), key=lambda p: int(p.name))
    records = []
    for path in sorted(glob.glob(str(examples / "Split-eval" / "*.gz"))):
        records += list(tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator())
    model = max((pipeline / "Trainer" / "model").iterdir(), key=lambda p: int(p.name))
    return {"out": out, "data": data, "records": records,
            "model": model / "Format-Serving", "root": root}


def warm(image):
    return Image.fromarray((np.asarray(image) * np.array([1.0, 0.85, 0.6])).astype(np.uint8))


def settings(run, log_name):
    """Each traffic pattern gets its own prediction log; every input is sampled."""
    return ["--set", f"pipeline.output_root='{run['out']}'",
            "--set", f"serving.log_url='sqlite:///{run['root'] / log_name}.db'",
            "--set", f"serving.samples_root='{run['root'] / log_name}'",
            "--set", "serving.sample_rate=1.0"]


def eval_files(run):
    features = [tf.train.Example.FromString(r).features.feature for r in run["records"]]
    return [str(run["data"] / f[FEATURES.source_id].bytes_list.value[0].decode())
            for f in features]


def test_predict_agrees_with_the_evaluated_predictions(run):
    model = tf.saved_model.load(str(run["model"]))
    evaluated = model.signatures["serving_examples"](
        examples=tf.constant(run["records"]))["class_name"].numpy().astype(str)
    files = eval_files(run)
    result = invoke("predict", *files, "--format", "json", *settings(run, "agree"))
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["input"] for row in rows] == files            # input order
    assert [row["class"] for row in rows] == list(evaluated)
    assert f"{len(files)} of {len(files)} inputs classified by shapes-cnn version 1" in result.stderr


def test_monitor_is_quiet_on_clean_traffic(run):
    files = eval_files(run)
    assert invoke("predict", *files, *settings(run, "clean")).exit_code == 0
    result = invoke("monitor", *settings(run, "clean"))
    assert result.exit_code == 0, result.stdout
    assert "no alerts" in result.stdout
    checks = {c["name"]: c["status"] for c in json.loads(
        invoke("monitor", "--format", "json", *settings(run, "clean")).stdout)["checks"]}
    assert len(checks) == 4 and set(checks.values()) == {"OK"}, checks


def test_monitor_fires_on_class_skewed_traffic(run):
    circles = sorted(glob.glob(str(run["data"] / "circle" / "*")))
    assert invoke("predict", *circles, *settings(run, "skewed")).exit_code == 0
    result = invoke("monitor", "--format", "json", *settings(run, "skewed"))
    assert result.exit_code == 1, result.stdout
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["class distribution"]["status"] == "ALERT"
    assert checks["class distribution"]["value"] > 0.5


def _eval_pixels(run):
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((32, 32))) for f in eval_files(run)])


def test_predict_refuses_pixels_scaled_to_0_1_and_cast_to_uint8(run, tmp_path):
    # The dtype is right, the values are not: every pixel 0 or 1.
    np.savez(tmp_path / "scaled.npz", x=(_eval_pixels(run) / 255.0).round().astype(np.uint8))
    result = invoke("predict", tmp_path / "scaled.npz", "--no-log", *settings(run, "scaled"))
    assert result.exit_code == 1
    assert "every pixel value is 0 or 1; expected uint8 pixels in [0, 255]" in result.stdout


def test_monitor_fires_on_darkened_traffic(run, tmp_path):
    # Accepted inputs that training never saw (a camera's exposure gone wrong):
    # the model answers, the monitor sees the inputs.
    np.savez(tmp_path / "dark.npz", x=(_eval_pixels(run) * 0.3).astype(np.uint8))
    assert invoke("predict", tmp_path / "dark.npz", *settings(run, "dark")).exit_code == 0
    result = invoke("monitor", *settings(run, "dark"))
    assert result.exit_code == 1, result.stdout
    assert "ALERT   input skew" in result.stdout


def test_predict_reports_unreadable_inputs_and_refuses_floats(run, tmp_path):
    good = eval_files(run)[0]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    np.savez(tmp_path / "floats.npz", x=np.zeros((2, 32, 32, 3), np.float32))
    from PIL import Image
    Image.new("RGB", (40, 40), (9, 200, 9)).save(tmp_path / "whole.png")
    # A header that passes the checks, a body TensorFlow cannot decode.
    (tmp_path / "truncated.png").write_bytes((tmp_path / "whole.png").read_bytes()[:80])
    result = invoke("predict", good, tmp_path / "broken.png", tmp_path / "floats.npz",
                    tmp_path / "truncated.png", "--format", "csv", "--no-log",
                    *settings(run, "errors"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "input,class,class_id,confidence,top_k,error,prediction_id" and len(lines) == 6
    assert lines[1].split(",")[1] in ("circle", "cross", "square", "triangle")
    assert "not a readable JPEG or PNG" in lines[2]
    assert "got float32 pixels" in lines[3] and "expected uint8" in lines[3]
    assert "truncated.png: the image could not be decoded" in lines[5]
    assert "1 of 5 inputs classified" in result.stderr and "4 could not be read" in result.stderr


def test_the_contract_round_trips_from_the_savedmodel_to_the_registry_and_the_server(run):
    from test_serving import on_loopback

    from imgpipe.contract import ARTIFACTS
    from imgpipe.pipeline.config import load_config
    from imgpipe.registry import store
    from imgpipe.serving import app
    asset = json.loads(open(ARTIFACTS.contract_path(str(run["model"])), encoding="utf-8").read())
    assert asset["inputs"]["serving_default"]["dtype"] == "uint8"
    assert asset["graph"]["normalization"]["name"] == "unit"
    config = load_config(str(CONFIG), {"pipeline.output_root": str(run["out"])})
    champion = store.champion(store.require_schema(config.registry_url), "shapes-cnn")
    shown = invoke("registry", "show", champion.model_uid, "--format", "json",
                   "--set", f"pipeline.output_root='{run['out']}'")
    assert json.loads(shown.stdout)["preprocessing_contract"] == asset
    with on_loopback(app.build(config, log_predictions=False)) as (client, _port):
        served = client.get("/v1/models/shapes-cnn/contract")
    assert served.status_code == 200 and served.json()["contract"] == asset
    assert served.json()["model_uid"] == champion.model_uid
    text = invoke("registry", "show", champion.model_uid, "--set", f"pipeline.output_root='{run['out']}'")
    assert "fuzz_report" in text.stdout and "REFUSED" in text.stdout


def test_monitor_names_the_channel_order_on_bgr_traffic_and_is_quiet_on_clean(run, tmp_path):
    np.savez(tmp_path / "bgr.npz", x=np.ascontiguousarray(_eval_pixels(run)[..., ::-1]))

    def client_mistake_check(name, *inputs):
        assert invoke("predict", *inputs, *settings(run, name)).exit_code == 0
        result = invoke("monitor", "--format", "json", *settings(run, name))
        return {c["name"]: c for c in json.loads(result.stdout)["checks"]}["client mistake"]

    swapped = client_mistake_check("bgr", tmp_path / "bgr.npz")
    assert swapped["status"] == "ALERT" and swapped["extra"]["mistake"] == "BGR", swapped["detail"]
    assert "channel order looks swapped (R and B exchanged)" in swapped["detail"]
    clean = client_mistake_check("clean-files", *eval_files(run))
    assert clean["status"] == "OK", clean["detail"]
