"""One small run through Transform and Trainer; the exported model, loaded from disk."""
import glob
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from conftest import REPO, shapes_tree
from imgpipe import quickstart_data
from imgpipe.contract import ImageSpec, image_ops
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e


def latest(pattern: str) -> Path:
    return Path(max(glob.glob(pattern), key=lambda p: int(Path(p).name)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    data = shapes_tree(root / "data", per_class=30, seed=7, suffixes=(".png", ".jpg"))
    out = root / "out"
    result = CliRunner().invoke(cli.main, [
        "run", "--config", str(REPO / "configs" / "quickstart.toml"), "--data", str(data),
        "--output-root", str(out), "--set", "training.epochs=2",
        "--set", "evaluation.f1_floor=0", "--set", "evaluation.accuracy_floor=0",
        "--set", "training.standardize=true", "--set", "training.augmentation.translation=0.1"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "[done ] Trainer" in result.output and "[done ] Transform" in result.output
    pipeline = out / "pipelines" / "imgpipe-quickstart"
    model_dir = latest(str(pipeline / "Trainer" / "model" / "*")) / "Format-Serving"
    examples = latest(str(pipeline / "ImageExampleGen" / "examples" / "*")) / "Split-eval"
    records = list(tf.data.TFRecordDataset(sorted(glob.glob(str(examples / "*.gz"))),
                                           compression_type="GZIP").as_numpy_iterator())[:12]
    parsed = [tf.train.Example.FromString(r).features.feature for r in records]
    sources = [data / p["source_id"].bytes_list.value[0].decode() for p in parsed]
    # Image files are kept encoded: the example holds the file, as it arrived.
    assert [p["image_encoded"].bytes_list.value[0] for p in parsed] == [f.read_bytes() for f in sources]
    spec = ImageSpec(32, 32, 3, exif_orientation="apply")
    pixels = np.stack([image_ops.decode_and_prepare(tf.constant(f.read_bytes()), spec).numpy()
                       for f in sources])
    transform_graph = latest(str(pipeline / "Transform" / "transform_graph" / "*"))
    return {"model": tf.saved_model.load(str(model_dir)), "model_dir": model_dir,
            "records": records, "pixels": pixels, "files": sources,
            "transform_graph": transform_graph}


def test_all_signatures_agree(trained):
    model = trained["model"]
    assert {"serving_default", "serving_bytes", "serving_examples", "transform_features"} <= set(
        model.signatures)
    by_pixels = model.signatures["serving_default"](images=tf.constant(trained["pixels"]))
    by_bytes = model.signatures["serving_bytes"](
        image_bytes=tf.constant([f.read_bytes() for f in trained["files"]]))
    by_examples = model.signatures["serving_examples"](examples=tf.constant(trained["records"]))
    for other in (by_bytes, by_examples):
        assert np.abs(by_pixels["probabilities"].numpy() - other["probabilities"].numpy()).max() <= 1e-5
        np.testing.assert_array_equal(by_pixels["class_id"].numpy(), other["class_id"].numpy())
    names = by_pixels["class_name"].numpy().astype(str)
    assert set(names) <= set(quickstart_data.CLASSES)
    assert by_pixels["probabilities"].shape == (12, 4)


def test_signatures_agree_with_the_transform_output(trained):
    import tensorflow_transform as tft
    output = tft.TFTransformOutput(str(trained["transform_graph"]))
    raw = {"image_encoded": tf.constant([[f.read_bytes()] for f in trained["files"]])}
    transformed = output.transform_raw_features(raw, drop_unused_features=True)["image_xf"]
    via_signature = trained["model"].signatures["transform_features"](
        examples=tf.constant(trained["records"]))["image_xf"]
    assert np.abs(transformed.numpy() - via_signature.numpy()).max() <= 1e-5
    # Standardisation came from the analyzers: the output is not just x / 255.
    assert np.abs(transformed.numpy() - trained["pixels"] / 255.0).max() > 0.1
    direct = trained["model"](transformed, training=False).numpy()
    served = trained["model"].signatures["serving_default"](
        images=tf.constant(trained["pixels"]))["probabilities"].numpy()
    assert np.abs(direct - served).max() <= 1e-5


def test_the_model_from_disk_refuses_float_pixels(trained):
    floats = tf.constant(trained["pixels"].astype(np.float32) / 255.0)
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError),
                       match="uint8"):
        trained["model"].signatures["serving_default"](images=floats)


def test_inference_is_deterministic(trained):
    signature = trained["model"].signatures["serving_default"]
    images = tf.constant(trained["pixels"])
    first, second = signature(images=images), signature(images=images)
    np.testing.assert_array_equal(first["probabilities"].numpy(), second["probabilities"].numpy())


def test_the_transform_graph_decodes_like_the_bytes_signature(trained):
    """Training's pixels come from the stored file through the transform graph;
    serving_bytes decodes a client's file with the same function. Both, and
    serving_default's uncompressed-PNG wrap of the decoded pixels, give one
    model input."""
    import tensorflow_transform as tft
    output = tft.TFTransformOutput(str(trained["transform_graph"]))
    from_examples = trained["model"].signatures["transform_features"](
        examples=tf.constant(trained["records"]))["image_xf"].numpy()
    from_files = output.transform_raw_features(
        {"image_encoded": tf.constant([[f.read_bytes()] for f in trained["files"]])},
        drop_unused_features=True)["image_xf"].numpy()
    np.testing.assert_array_equal(from_examples, from_files)
    rewrapped = output.transform_raw_features(
        {"image_encoded": tf.constant([[tf.io.encode_png(p, compression=0).numpy()]
                                       for p in trained["pixels"]])},
        drop_unused_features=True)["image_xf"].numpy()
    np.testing.assert_array_equal(from_examples, rewrapped)


def test_training_record_is_saved_with_the_model(trained):
    record = json.loads((trained["model_dir"] / "assets" / "training_config.json").read_text())
    assert record["class_names"] == list(quickstart_data.CLASSES)
    # The quickstart's policies, as configured (EXIF orientation applied).
    assert record["image_spec"] == ImageSpec(32, 32, 3, exif_orientation="apply").to_dict()
    assert record["epochs_run"] == 2 and record["fit"]["epochs"] == 2
    assert record["augmentation"]["translation"] == 0.1
    assert len(record["training_data_sha256"]) == 64 and len(record["schema_sha256"]) == 64
    assert record["model"]["parameters"] == 122_570 - 650 + 260  # 4 classes, not 10
