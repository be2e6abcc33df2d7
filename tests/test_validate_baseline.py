"""`imgpipe validate SOURCE --baseline OTHER`: OTHER is any source (class folders,
.npz, TFRecords) or statistics (a TFDV statistics file, a TFX statistics
folder), decided by what it is; drift is measured against it."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from conftest import REPO, shapes_tree
from imgpipe.components.image_example_gen import encoding
from imgpipe.components.validation_gate import inprocess
from imgpipe.pipeline import cli

SCHEMA = REPO / "schemas" / "quickstart.pbtxt"   # 32x32x3, circle/cross/square/triangle
PER_CLASS = 50                                   # 200 images a side


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def brighter_by_80(image):
    return Image.fromarray(np.clip(np.asarray(image).astype(np.int16) + 80, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    made = {
        "folder": shapes_tree(root / "baseline", per_class=PER_CLASS, seed=1),
        "clean": shapes_tree(root / "clean", per_class=PER_CLASS, seed=2),
        "one_class": shapes_tree(root / "one_class", per_class=PER_CLASS, seed=3,
                                 folders={"circle": "circle"}),
        "shifted": shapes_tree(root / "shifted", per_class=PER_CLASS, seed=4,
                               transform=brighter_by_80),
    }
    npz = root / "baseline.npz"
    converted = invoke("to-npz", made["folder"], "--output", npz, "--set",
                       f"validation.schema_file={SCHEMA}")
    assert converted.exit_code == 0, converted.output
    made["npz"] = npz
    # TFRecords of tf.Example in ingestion's own layout (its encoder), as a pipeline run writes.
    with np.load(npz) as arrays:
        x, y = arrays["x"], arrays["y"]
    made["tfrecord"] = root / "baseline.tfrecord"
    with tf.io.TFRecordWriter(str(made["tfrecord"])) as writer:
        for record in encoding.encode_examples(x, y, [f"b{i}" for i in range(len(x))], "uint8"):
            writer.write(record)
    return made


def baseline_statistics(data):
    """What StatisticsGen computes: statistics with the schema (label categorical)."""
    import tensorflow_data_validation as tfdv
    return inprocess.load_baseline(str(data["folder"]), tfdv.load_schema_text(str(SCHEMA)),
                                   height=32, width=32, channels=3).statistics


BASELINES = ["folder", "npz", "tfrecord"]


@pytest.mark.parametrize("kind", BASELINES)
def test_a_clean_span_passes_against_a_data_baseline(data, kind):
    result = invoke("validate", data["clean"], "--schema", SCHEMA, "--baseline", data[kind])
    assert result.exit_code == 0, result.output
    assert f"drift baseline: {data[kind]} (" in result.output
    assert "200 examples, OK" in result.output
    # Image files are the encoded layout: drift is judged on per-image properties,
    # computed alike from the baseline's pixels (arrays, records) and files.
    assert "drift brightness: jensen shannon divergence" in result.output
    assert "drift mean_red: jensen shannon divergence" in result.output
    assert "drift label: l infty" in result.output


@pytest.mark.parametrize("kind", BASELINES)
def test_one_class_span_is_label_drift_against_a_data_baseline(data, kind):
    result = invoke("validate", data["one_class"], "--schema", SCHEMA, "--baseline", data[kind])
    assert result.exit_code == 1, result.output
    # Baseline 1/4 of each class, the span all circles: L-infinity 0.75.
    assert ("ERROR: label: label distribution drifted from the baseline: L-infinity distance "
            "0.750 above the threshold 0.1") in result.output
    assert "drift label: l infty 0.7500 (threshold 0.1)" in result.output


@pytest.mark.parametrize("kind", BASELINES)
def test_brighter_span_is_brightness_drift_against_a_data_baseline(data, kind):
    result = invoke("validate", data["shifted"], "--schema", SCHEMA, "--baseline", data[kind],
                    "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["baseline"] == {"path": str(data[kind]), "examples": 4 * PER_CLASS,
                                  "kind": {"folder": "folders", "npz": "npz",
                                           "tfrecord": "tfrecord"}[kind]}
    drift = report["splits"][0]["drift"]
    assert drift["brightness"]["measure"] == "JENSEN_SHANNON_DIVERGENCE"
    assert drift["brightness"]["value"] > drift["brightness"]["threshold"] == pytest.approx(0.1)
    assert drift["label"]["value"] == 0
    messages = [f["message"] for f in report["splits"][0]["findings"]]
    assert any(m.startswith("brightness: per-image distribution drifted from the baseline: "
                            "Jensen-Shannon divergence ") for m in messages), messages


def test_the_config_thresholds_apply_to_a_data_baseline(data):
    result = invoke("validate", data["one_class"], "--schema", SCHEMA, "--baseline", data["npz"],
                    "--set", "validation.label_drift_threshold=0.8",
                    "--set", "validation.property_drift_threshold=0.9")
    assert result.exit_code == 0, result.output
    assert "drift label: l infty 0.7500 (threshold 0.8)" in result.output
    assert "drift brightness: jensen shannon divergence" in result.output
    assert "(threshold 0.9)" in result.output


def test_statistics_baselines_are_recognised_by_what_they_are(data, tmp_path):
    import tensorflow_data_validation as tfdv
    stats = baseline_statistics(data)
    # A TFX ExampleStatistics artifact: Split-<name>/FeatureStats.pb (binary); its train split.
    artifact = tmp_path / "Statistics"
    for split in ("train", "eval"):
        (artifact / f"Split-{split}").mkdir(parents=True)
    (artifact / "Split-train" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    shutil.copy(artifact / "Split-train" / "FeatureStats.pb", artifact / "Split-eval")
    text = tmp_path / "stats.pbtxt"
    tfdv.write_stats_text(stats, str(text))
    # TFDV's TFRecord form, named like data on purpose: the contents decide.
    record = tmp_path / "stats.tfrecord"
    with tf.io.TFRecordWriter(str(record)) as writer:
        writer.write(stats.SerializeToString())
    binary = tmp_path / "stats.pb"
    binary.write_bytes(stats.SerializeToString())
    for path, kind in [(artifact, "TFX statistics folder (Split-train)"),
                       (artifact / "Split-train", "TFX statistics folder (Split-train)"),
                       (text, "TFDV statistics file"), (record, "TFDV statistics file"),
                       (binary, "TFDV statistics file")]:
        clean = invoke("validate", data["clean"], "--schema", SCHEMA, "--baseline", path)
        assert clean.exit_code == 0, clean.output
        assert f"drift baseline: {path} ({kind}, 200 examples)" in clean.output
        drifted = invoke("validate", data["one_class"], "--schema", SCHEMA, "--baseline", path)
        assert drifted.exit_code == 1 and "drift label: l infty 0.7500" in drifted.output


def test_data_files_are_not_taken_for_statistics(data):
    assert inprocess.read_statistics_file(str(data["npz"])) is None
    assert inprocess.read_statistics_file(str(data["tfrecord"])) is None
    assert inprocess.load_statistics_file(str(data["folder"])) is None
    assert inprocess.read_statistics_file(str(next(data["folder"].rglob("*.png")))) is None


@pytest.mark.parametrize("make, arrived", [
    (lambda p: p.write_text("no statistics here\n") and p, "got: a file of 19 bytes, not a "
     "DatasetFeatureStatisticsList describing any feature; read as data: data source"),
    (lambda p: (p.with_suffix(".npz").write_bytes(b"PK\x03\x04 truncated"), p.with_suffix(".npz"))[1],
     "got: a file of 14 bytes, not a DatasetFeatureStatisticsList describing any feature; "
     "read as data: not a readable .npz file"),
    (lambda p: (p.mkdir(), p)[1], "got: an empty folder; read as data: "),
    (lambda p: p / "missing", "got: nothing (no such file or folder)"),
])
def test_a_baseline_that_is_neither_data_nor_statistics_is_a_usage_error(data, tmp_path, make,
                                                                          arrived):
    path = make(tmp_path / "other")
    result = invoke("validate", data["clean"], "--schema", SCHEMA, "--baseline", path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"Error: baseline {path}: neither readable data nor statistics.\n" in result.output
    assert ("  expected one of: a class-folder tree; an .npz (x, optional y); TFRecords of "
            "tf.Example (a file, a folder of them or a glob); a TFDV statistics file "
            "(DatasetFeatureStatisticsList: binary, text or one-record TFRecord); a TFX "
            "statistics folder (Split-<name>/FeatureStats.pb; its train split)\n") in result.output
    assert arrived in result.output


def test_a_tfx_statistics_folder_that_is_not_statistics_is_named(data, tmp_path):
    broken = tmp_path / "Statistics" / "Split-train"
    broken.mkdir(parents=True)
    (broken / "FeatureStats.pb").write_bytes(b"not a proto")
    result = invoke("validate", data["clean"], "--schema", SCHEMA, "--baseline", broken.parent)
    assert result.exit_code == 2
    assert f"{broken / 'FeatureStats.pb'}: not a TFDV statistics file" in result.output


def test_help_says_what_a_baseline_may_be():
    result = invoke("validate", "--help")
    text = " ".join(result.output.split())
    for kind in ("class-folder tree", ".npz", "TFRecords", "TFDV statistics file",
                 "TFX statistics folder (Split-*/FeatureStats.pb; its train split)"):
        assert kind in text, text


def test_tfrecords_baseline_as_a_folder_or_a_glob(data, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    shutil.copy(data["tfrecord"], folder / "part-0.tfrecord")
    for baseline in (folder, tmp_path / "rec*" / "*.tfrecord"):
        result = invoke("validate", data["one_class"], "--schema", SCHEMA, "--baseline", baseline)
        assert result.exit_code == 1, result.output
        assert f"drift baseline: {baseline} (tfrecord data, 200 examples)" in result.output
        assert "drift label: l infty 0.7500 (threshold 0.1)" in result.output
