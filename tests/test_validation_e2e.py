"""The gate in the real pipeline, and `imgpipe validate` / `imgpipe schema` through the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from conftest import REPO, encode, photo_tree, shapes_tree
from imgpipe import quickstart_data
from imgpipe.contract import ImageSpec, image_ops
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e
QUICKSTART = REPO / "configs" / "quickstart.toml"


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def shapes_arrays(per_class=25, seed=0):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label, shape in enumerate(quickstart_data.CLASSES):
        for _ in range(per_class):
            data = encode(quickstart_data.draw_shape(shape, rng), "PNG")
            x.append(image_ops.decode_and_prepare(tf.constant(data), ImageSpec(32, 32, 3)).numpy())
            y.append(label)
    return np.stack(x), np.array(y)


def test_float_data_halts_the_pipeline_with_a_readable_report(tmp_path):
    x, y = shapes_arrays()
    np.savez(tmp_path / "scaled.npz", x=x.astype(np.float32) / 255.0, y=y)
    result = invoke("run", "--config", QUICKSTART, "--data", tmp_path / "scaled.npz",
                    "--output-root", tmp_path / "out")
    assert result.exit_code == 1
    assert ("image: expected INT pixels in [0, 255] (uint8); got FLOAT in [0, 1] (source dtype "
            "float32) — the data looks already scaled to [0,1]; feeding it would scale twice."
            ) in result.output
    assert "The pipeline stopped before training." in result.output
    assert "[FAIL ] ValidationGate" in result.output
    assert "[start] Transform" not in result.output and "Trainer" not in result.output
    # TFX deletes a failed execution's outputs; the report is kept aside.
    reports = list((tmp_path / "out").rglob("failed/*/validation_report.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["passed"] is False
    assert (reports[0].parent / "statistics.html").exists()
    # A failed span never becomes a drift baseline.
    assert not (tmp_path / "out" / "baselines").exists() or \
        not any((tmp_path / "out" / "baselines").rglob("FeatureStats.pb"))


def test_a_drifted_span_halts_and_a_clean_one_passes(tmp_path):
    from PIL import ImageEnhance
    drops = tmp_path / "drops"
    shapes_tree(drops / "span-1", seed=1)
    out = tmp_path / "out"
    # One-epoch models of successive spans: neither floors nor the champion
    # comparison are under test here.
    quick = ["--set", "training.epochs=1", "--set", "evaluation.f1_floor=0",
             "--set", "evaluation.accuracy_floor=0", "--set", "evaluation.max_accuracy_drop=1"]
    first = invoke("run", "--config", QUICKSTART, "--data", drops / "span-{SPAN}", "--output-root", out,
                   *quick)
    assert first.exit_code == 0, first.output
    assert "drift baseline: no earlier span" in first.output

    shapes_tree(drops / "span-2", seed=2)
    clean = invoke("run", "--config", QUICKSTART, "--data", drops / "span-{SPAN}", "--output-root", out,
                   *quick)
    assert clean.exit_code == 0, clean.output
    assert "drift baseline: span 1: PASSED" in clean.output
    assert "statistics_vs_previous_span.html" in clean.output

    shapes_tree(drops / "span-3", seed=3, transform=lambda im: ImageEnhance.Brightness(im).enhance(2.5))
    drifted = invoke("run", "--config", QUICKSTART, "--data", drops / "span-{SPAN}", "--output-root", out,
                     *quick)
    assert "[start] Transform" not in drifted.output  # the gate held
    assert drifted.exit_code == 1
    assert "drift baseline: span 2: FAILED" in drifted.output
    # Image files are the encoded layout: their drift shows in the per-image properties.
    assert "brightness: per-image distribution drifted from the baseline: Jensen-Shannon " \
        "divergence" in drifted.output


def test_validate_exit_codes_and_formats(tmp_path):
    x, y = shapes_arrays(per_class=10)
    np.savez(tmp_path / "good.npz", x=x, y=y)
    np.savez(tmp_path / "float64.npz", x=x.astype(np.float64), y=y)
    np.savez(tmp_path / "unlabelled.npz", x=x)
    schema = REPO / "schemas" / "quickstart.pbtxt"

    ok = invoke("validate", tmp_path / "good.npz", "--schema", schema)
    assert ok.exit_code == 0, ok.output
    assert "40 examples, OK" in ok.output

    bad = invoke("validate", tmp_path / "float64.npz", "--schema", schema, "--format", "json")
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report["passed"] is False
    messages = [f["message"] for f in report["splits"][0]["findings"]]
    assert any("source dtype float64" in m for m in messages)

    serving = invoke("validate", tmp_path / "unlabelled.npz", "--schema", schema,
                     "--environment", "serving")
    assert serving.exit_code == 0, serving.output
    training = invoke("validate", tmp_path / "unlabelled.npz", "--schema", schema)
    assert training.exit_code == 1

    missing = invoke("validate", tmp_path / "nothing.npz", "--schema", schema)
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
    usage = invoke("validate", tmp_path / "good.npz", "--environment", "production")
    assert usage.exit_code == 2


def test_validate_image_folders_like_ingestion_and_against_a_baseline(tmp_path):
    from PIL import ImageEnhance
    shapes_tree(tmp_path / "train", seed=4)
    # A serving sample: images without class folders, some of another size.
    sample = tmp_path / "requests"
    sample.mkdir()
    rng = np.random.default_rng(5)
    for i in range(20):
        quickstart_data.draw_shape("circle", rng, size=48 if i < 5 else 32).save(sample / f"{i}.jpg")
    result = invoke("validate", sample, "--environment", "serving", "--baseline", tmp_path / "train")
    assert "conversions (as ingestion does them): resized x5" in result.output
    assert "source sizes resized: 48x48 x5" in result.output
    assert "drift label" not in result.output or result.exit_code in (0, 1)
    dark = tmp_path / "dark"
    shapes_tree(dark, seed=6, transform=lambda im: ImageEnhance.Brightness(im).enhance(0.2))
    drifted = invoke("validate", dark, "--baseline", tmp_path / "train")
    assert drifted.exit_code == 1 and "brightness: per-image distribution drifted" in drifted.output


def test_schema_infer_writes_a_curated_draft_and_show_reads_it(tmp_path):
    shapes_tree(tmp_path / "data", per_class=8)
    out = tmp_path / "schema.pbtxt"
    result = invoke("schema", "infer", tmp_path / "data", "--output", out,
                    "--set", "validation.property_drift_threshold=0.05")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# imgpipe curated schema")
    shown = invoke("schema", "show", out)
    assert "label            INT     shape [1]  in [0, 3] categorical" in shown.output
    assert "image_encoded    BYTES   shape [1]  present in 100%" in shown.output
    assert "brightness       FLOAT   1..1 values  in [0, 255]  optional" in shown.output
    assert "drift: JS divergence > 0.05" in shown.output
    # The drafted schema gates the same data cleanly.
    assert invoke("validate", tmp_path / "data", "--schema", out).exit_code == 0


@pytest.mark.parametrize("command", [["schema"], ["schema", "infer"], ["schema", "show"], ["validate"]])
def test_validation_commands_have_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_to_npz_makes_the_float_trap_that_validate_refuses(tmp_path):
    shapes_tree(tmp_path / "data", per_class=5)
    made = invoke("to-npz", tmp_path / "data", "--output", tmp_path / "f.npz",
                  "--dtype", "float32", "--scale-to-unit")
    assert made.exit_code == 0, made.output
    with np.load(tmp_path / "f.npz") as arrays:
        assert arrays["x"].dtype == np.float32 and arrays["x"].max() <= 1.0
        assert arrays["y"].tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
        assert arrays["class_names"].tolist() == list(quickstart_data.CLASSES)
    refused = invoke("validate", tmp_path / "f.npz")
    assert refused.exit_code == 1 and "already scaled to [0,1]" in refused.output
    plain = invoke("to-npz", tmp_path / "data", "--output", tmp_path / "u.npz")
    assert plain.exit_code == 0 and invoke("validate", tmp_path / "u.npz").exit_code == 0


def test_validate_tfrecords_as_they_are(tmp_path):
    path = tmp_path / "requests.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(4):
            example = tf.train.Example()
            example.features.feature["image"].bytes_list.value.append(
                encode(quickstart_data.draw_shape("circle", np.random.default_rng(i)), "PNG"))
            writer.write(example.SerializeToString())
    result = invoke("validate", path, "--environment", "serving")
    assert result.exit_code == 1
    assert "got BYTES — encoded image files" in result.output


def test_class_folders_that_disagree_with_the_schema_halt(tmp_path):
    data = shapes_tree(tmp_path / "data", per_class=10)
    (data / "circle").rename(data / "ball")   # sorts first: every label id shifts meaning
    result = invoke("run", "--config", QUICKSTART, "--data", data, "--output-root", tmp_path / "out")
    assert result.exit_code == 1
    assert "label: the data's classes are ['ball', 'cross', 'square', 'triangle'] but the schema's " \
           "are ['circle', 'cross', 'square', 'triangle']" in result.output


# The command runs under a small wrapper process: a child forked straight from
# pytest (gigabytes by then) would count pytest's pages in its own peak.
_MEASURE = ("import resource, subprocess, sys\n"
            "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
            "sys.stderr.write(done.stderr.decode()[-2000:])\n"
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def peak_rss_mb(*args) -> tuple:
    """Exit code, peak resident memory (MB) and stderr of one `imgpipe` command run alone."""
    measured = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m",
                               "imgpipe.pipeline.cli", *map(str, args)],
                              capture_output=True, text=True, check=True)
    code, peak_kb = measured.stdout.split()
    return int(code), int(peak_kb) / 1024, measured.stderr


def test_validate_and_schema_infer_hold_a_batch_of_photos_not_the_dataset(tmp_path):
    """224x224 photos at two dataset sizes: held whole, the 240 more photos
    would add at least 290 MB (int64 pixels alone; 7.4 MB a photo measured;
    36 MB of uint8 for to-npz's arrays); read a batch at a time, the peak is the same."""
    sets = ("--set", "image.height=224", "--set", "image.width=224",
            "--set", "data.classes=['ants','bees']")
    peaks = {}
    for per_class in (40, 160):
        photos = photo_tree(tmp_path / f"photos-{per_class}", per_class)
        schema = tmp_path / f"schema-{per_class}.pbtxt"
        code, infer_peak, err = peak_rss_mb("schema", "infer", photos, "--output", schema, *sets)
        assert code == 0, err
        code, validate_peak, err = peak_rss_mb("validate", photos, "--schema", schema, *sets)
        assert code == 0, err
        npz = tmp_path / f"photos-{per_class}.npz"
        code, npz_peak, err = peak_rss_mb("to-npz", photos, "--output", npz, *sets)
        assert code == 0, err
        with np.load(npz) as arrays:
            assert arrays["x"].shape == (2 * per_class, 224, 224, 3) and arrays["x"].dtype == np.uint8
            assert arrays["y"].tolist() == [0] * per_class + [1] * per_class
        peaks[per_class] = (infer_peak, validate_peak, npz_peak)
    for command in (0, 1, 2):
        small, large = peaks[40][command], peaks[160][command]
        assert large - small < 100, peaks
        assert large < 2048, peaks
