"""Bring your own model through the whole pipeline; weights from an earlier run; the
preprocessing trap one layer deeper (a backbone's normalisation swapped at export)."""
import glob
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import trap_exports
from click.testing import CliRunner

from conftest import REPO, shapes_tree
from imgpipe import quickstart_data
from imgpipe.components.evaluation_gate import decisions, eval_config, parity, tfma_results
from imgpipe.components.trainer import networks
from imgpipe.components.trainer.settings import TrainerSettings
from imgpipe.contract import ARTIFACTS, ImageSpec
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e
CONFIG = REPO / "configs" / "quickstart.toml"
# Low floors: a 15-image class of a small model moves by chance; these tests are
# about the model's source, weights and normalisation, not its quality.
FLOORS = ["--set", "evaluation.f1_floor=0.3", "--set", "evaluation.accuracy_floor=0.5"]

# A user's network that takes ImageNet caffe-mode input (BGR, means
# subtracted, 0..255), as a ResNet50 trained with caffe preprocessing would.
MY_MODELS = '''
import tf_keras as keras


def build(image, num_classes, args):
    inputs = keras.Input(image.shape)
    x = keras.layers.Conv2D(args["filters"], 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(2 * args["filters"], 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))


def rescaling(image, num_classes, args):
    inputs = keras.Input(image.shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def latest(pattern: str) -> Path:
    return Path(max(glob.glob(pattern), key=lambda p: int(Path(p).name)))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "my_models.py").write_text(MY_MODELS)
    # The project's config names the module relative to its own folder.
    (root / "imgpipe.toml").write_text(
        CONFIG.read_text().replace('model = "cnn"\n', 'model = "my_models:build"\n', 1)
        .replace('input_normalization = ""', 'input_normalization = "caffe"', 1)
        + '\n[training.model_args]\nfilters = 16\n')
    data = shapes_tree(root / "data", per_class=100, seed=5)
    out = root / "out"
    first = invoke("run", "--config", root / "imgpipe.toml", "--data", data, "--output-root", out,
                   "--set", "training.epochs=20", "--set", "training.batch_size=16", *FLOORS)
    return {"root": root, "data": data, "out": out, "first": first,
            "pipeline": out / "pipelines" / "imgpipe-quickstart"}


def _record(model_dir: Path) -> dict:
    return json.loads(Path(ARTIFACTS.training_record_path(str(model_dir))).read_text())


def test_a_user_model_is_trained_exported_with_the_contract_and_pushed(project):
    result = project["first"]
    assert result.exit_code == 0, result.output
    assert "model user:my_models:build:" in result.output
    assert "input normalisation caffe" in result.output and "BLESSED" in result.output
    model_dir = latest(str(project["pipeline"] / "Trainer" / "model" / "*")) / "Format-Serving"
    record = _record(model_dir)
    assert record["normalization"]["name"] == "caffe" and record["model"]["model_args"] == {"filters": 16}
    user = record["model"]["user_module"]
    assert user["sha256"] == hashlib.sha256(MY_MODELS.encode()).hexdigest()
    # The contract: uint8 in, the graph normalises; floats refused by the signature.
    loaded = tf.saved_model.load(str(model_dir))
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="uint8"):
        loaded.signatures["serving_default"](images=tf.zeros([1, 32, 32, 3], tf.float32))
    report = json.loads((latest(str(project["pipeline"] / "EvaluationGate" / "report" / "*"))
                         / "evaluation_report.json").read_text())
    assert report["blessed"] and report["parity"]["disagreement"] <= 0.005
    shown = invoke("registry", "show", "--config", project["root"] / "imgpipe.toml",
                   "--set", f"pipeline.output_root={project['out']}", _uid(project))
    assert shown.exit_code == 0, shown.output
    assert re.search(r"architecture_type\s+user:my_models:build\n", shown.output)
    assert re.search(r"network input\s+caffe: BGR", shown.output)


def _uid(project) -> str:
    listed = invoke("registry", "list", "--format", "json", "--config", project["root"] / "imgpipe.toml",
                    "--set", f"pipeline.output_root={project['out']}")
    return json.loads(listed.output)[0]["model_uid"]   # newest first


def test_a_run_starts_from_the_weights_an_earlier_run_saved(project):
    assert project["first"].exit_code == 0
    first_dir = latest(str(project["pipeline"] / "Trainer" / "model" / "*")) / "Format-Serving"
    weights = first_dir / "assets" / ARTIFACTS.weights
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    second = invoke("run", "--config", project["root"] / "imgpipe.toml", "--data", project["data"],
                    "--output-root", project["out"], "--set", "training.epochs=2",
                    "--set", f'training.weights="{weights}"',
                    # Two more epochs may move a class either way: this test is about the weights.
                    "--set", "evaluation.f1_floor=0.0", "--set", "evaluation.accuracy_floor=0.0",
                    "--set", "evaluation.max_accuracy_drop=1.0")
    assert second.exit_code == 0, second.output
    assert f"sha256 {digest[:12]}" in second.output
    record = _record(latest(str(project["pipeline"] / "Trainer" / "model" / "*")) / "Format-Serving")
    assert record["weights"] == {"source": str(weights), "sha256": digest, "loaded_into": "model"}
    rows = json.loads(invoke("registry", "list", "--format", "json", "--config",
                             project["root"] / "imgpipe.toml", "--set",
                             f"pipeline.output_root={project['out']}").output)
    shown = json.loads(invoke("registry", "show", "--format", "json", "--config",
                              project["root"] / "imgpipe.toml", "--set",
                              f"pipeline.output_root={project['out']}", rows[0]["model_uid"]).output)
    assert shown["weights_sha256"] == digest and shown["parameter_count"] > 0


def test_a_user_model_expecting_0_to_255_stops_the_run_before_ingestion(project, tmp_path):
    result = invoke("run", "--config", project["root"] / "imgpipe.toml", "--data", project["data"],
                    "--output-root", tmp_path / "out", "--set",
                    f'training.model="{project["root"] / "my_models.py"}:rescaling"',
                    "--set", 'training.input_normalization="unit"')
    assert result.exit_code != 0
    assert "rescales its input by 0.00392157, so the model expects 0..255 pixels" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "pipelines").exists()


def test_a_missing_weights_file_stops_the_run_before_ingestion(tmp_path):
    missing = tmp_path / "earlier" / "weights.h5"
    result = invoke("run", "--config", CONFIG, "--output-root", tmp_path / "out",
                    "--set", f'training.weights="{missing}"')
    assert result.exit_code != 0
    assert f"training.weights: no file {missing}" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "pipelines").exists()


def _swapped_normalisation_export(model_dir: Path, target: Path, settings: TrainerSettings) -> Path:
    """The trap one layer deeper: evaluation runs the training path, but the
    serving signatures feed the network MobileNet's [-1, 1] instead of the
    caffe input it was trained on."""
    import tf_keras as keras
    loaded = tf.saved_model.load(str(model_dir))
    classifier = networks.build_classifier(settings.model, settings.image, len(settings.class_names))
    classifier.model.load_weights(str(model_dir / "assets" / ARTIFACTS.weights))
    inputs = keras.Input(settings.image.shape)
    wrong_input = networks.Normalize("tf")(inputs)
    after = classifier.model.layers[2:]          # past the input and normalize_caffe
    x = wrong_input
    for layer in after:
        x = layer(x)
    wrong = keras.Model(inputs, x)
    return trap_exports.save_wrong_serving(loaded, target, settings.image, wrong, scale=1 / 255.0)


def test_a_swapped_backbone_normalisation_passes_tfma_but_not_the_parity_gate(project, tmp_path):
    import tensorflow_model_analysis as tfma
    assert project["first"].exit_code == 0
    trainer = latest(str(project["pipeline"] / "Trainer" / "model" / "*"))
    model_dir = trainer / "Format-Serving"
    from imgpipe.pipeline.config import load_config
    from imgpipe.pipeline.pipeline import trainer_settings
    config = load_config(project["root"] / "imgpipe.toml")
    settings = trainer_settings(config, list(quickstart_data.CLASSES))
    swapped = _swapped_normalisation_export(model_dir, tmp_path / "swapped", settings)
    examples = latest(str(project["pipeline"] / "ImageExampleGen" / "examples" / "*"))
    classes = list(quickstart_data.CLASSES)
    config_tfma = eval_config.build_eval_config(classes, 0.5)
    shared = tfma.default_eval_shared_model(eval_saved_model_path=str(swapped), eval_config=config_tfma)
    out = tmp_path / "tfma"
    tfma.run_model_analysis(eval_shared_model=shared, eval_config=config_tfma,
                            data_location=glob.glob(str(examples / "Split-eval" / "*.gz"))[0],
                            output_path=str(out), file_format="tfrecords")
    assert tfma.load_validation_result(str(out)).validation_ok  # TFMA alone: blessed
    measured = tfma_results.read(str(out), len(classes))
    inputs = parity.load_inputs(str(examples / "Split-eval"), str(project["data"]),
                                ImageSpec(32, 32, 3).shape)
    checked = parity.check(str(swapped), inputs, measured.accuracy)
    assert checked.serving_path == "serving_bytes"
    assert checked.evaluated_accuracy - checked.served_accuracy > 0.2 and checked.disagreement > 0.2
    rows = decisions.class_rows(classes, measured.confusion, measured.f1, measured.precision,
                                measured.recall, eval_config.f1_floors(classes, 0.5, {}))
    decision = decisions.decide(measured.accuracy, 0.5, rows, checked, 0.005, 0.005)
    assert not decision.blessed
    assert any(f.startswith("parity: serving_bytes scores") for f in decision.failures)
    # The honest export agrees with itself.
    honest = parity.check(str(model_dir), inputs, measured.accuracy)
    assert honest.disagreement <= 0.005
    assert np.isclose(honest.evaluated_accuracy, measured.accuracy)
