"""End to end: the real TFX pipeline on the Beam DirectRunner, through the CLI."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from conftest import REPO, shape_image, write_class_tree
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e
# One epoch makes no good model: the blessing floors are not under test here.
NO_FLOORS = ("--set", "evaluation.f1_floor=0", "--set", "evaluation.accuracy_floor=0")


def invoke(*args):
    result = CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)
    return result


def read_examples(split_dir: Path):
    records = []
    for path in sorted(split_dir.glob("*.gz")):
        records += list(tf.data.TFRecordDataset(str(path), compression_type="GZIP").as_numpy_iterator())
    return [tf.train.Example.FromString(r) for r in records]


def artifact_dir(output_root: Path, pipeline: str, component: str, key: str) -> Path:
    base = output_root / "pipelines" / pipeline / component / key
    return max(base.iterdir(), key=lambda p: int(p.name))


def test_run_ingests_validates_statistics_and_caches(tmp_path):
    data = write_class_tree(tmp_path / "data", per_class=30, classes=("circle", "cross", "square"))
    shape_image("circle", seed=99).convert("L").save(data / "circle" / "grey.png")
    (data / "square" / "broken.jpg").write_bytes(b"")
    (data / "cross" / "nested").mkdir()
    (data / "triangle").mkdir()                       # an empty class folder
    os.symlink(data / "gone.png", data / "circle" / "link.png")
    out = tmp_path / "out"

    result = invoke("run", "--config", REPO / "configs" / "quickstart.toml", "--data", data,
                    "--output-root", out, "--set", "data.max_bad_fraction=0.05",
                    "--set", "pipeline.name='e2e'", "--set", "training.epochs=1",
                    *NO_FLOORS)
    # Every stage runs; the empty `triangle` class folder leaves that class
    # without evaluation examples, so the model is (rightly) not blessed.
    assert result.exit_code == 1, result.output
    assert "class triangle: no examples in the evaluation split" in result.output
    for stage in ("ImageExampleGen", "CuratedSchema", "StatisticsGen", "ValidationGate",
                  "Transform", "Trainer", "Evaluator", "ChampionResolver", "EvaluationGate",
                  "RegistryPusher"):
        assert f"[start] {stage}" in result.output and f"[done ] {stage}" in result.output
    assert "examples: " in result.output and "statistics: " in result.output
    assert "grayscale -> RGB" in result.output
    assert "broken.jpg: empty file (0 bytes)" in result.output
    assert "link.png: unreadable (broken symbolic link)" in result.output
    assert "nested: a folder inside a class folder" in result.output
    assert "WARNING: empty class folders:" in result.output and "triangle" in result.output

    examples_dir = artifact_dir(out, "e2e", "ImageExampleGen", "examples")
    splits = {p.name: read_examples(p) for p in examples_dir.iterdir() if p.is_dir()}
    assert set(splits) == {"Split-train", "Split-validation", "Split-eval"}
    assert sum(len(v) for v in splits.values()) == 91
    example = splits["Split-train"][0].features.feature
    # Image files are kept as they arrived, with their format, size and properties.
    source = data / example["source_id"].bytes_list.value[0].decode()
    assert example["image_encoded"].bytes_list.value == [source.read_bytes()]
    assert example["image_format"].bytes_list.value[0] in (b"JPEG", b"PNG")
    assert "image" not in example and "pixel_dtype" not in example
    assert 0 < example["brightness"].float_list.value[0] < 255
    assert example["aspect_ratio"].float_list.value == [1.0]

    report = json.loads((artifact_dir(out, "e2e", "ImageExampleGen", "report")
                         / "ingestion_report.json").read_text())
    assert report["examples"] == 91 and report["bad"] == 2
    assert report["class_names"] == ["circle", "cross", "square", "triangle"]
    assert sum(s["examples"] for s in report["splits"].values()) == 91
    assert (artifact_dir(out, "e2e", "CuratedSchema", "schema") / "schema.pbtxt").exists()
    stats = artifact_dir(out, "e2e", "StatisticsGen", "statistics")
    assert (stats / "Split-train" / "FeatureStats.pb").exists()
    gate = artifact_dir(out, "e2e", "ValidationGate", "report")
    assert json.loads((gate / "validation_report.json").read_text())["passed"] is True
    assert (gate / "statistics.html").exists()
    assert "Validation of span 0 against the curated schema" in result.output
    # A look at the data: pictures beside the validation report, class warnings, one page.
    for picture in ("samples.png", "label_distribution.png", "brightness.png", "aspect_ratio.png"):
        assert (gate / picture).stat().st_size > 1000, picture
    assert "WARNING (not blocking): class 'triangle' has 0 training images, class " in result.output
    assert "training images (fewer than 50)" in result.output
    assert "the run's reports and pictures: " in result.output and "report.html" in result.output
    page = (out / "report.html").read_text()
    assert "ingestion_report.txt" in page and "samples.png" in page
    assert "evaluation_report.txt" in page
    (out / "report.html").unlink()
    again_page = invoke("report", out, "--html")
    assert again_page.exit_code == 0 and again_page.output.strip() == str(out / "report.html")
    assert (out / "report.html").read_text() == page

    # Same data, same config: every stage comes from the cache and the split
    # of each image is the same.
    again = invoke("run", "--config", REPO / "configs" / "quickstart.toml", "--data", data,
                   "--output-root", out, "--set", "data.max_bad_fraction=0.05",
                   "--set", "pipeline.name='e2e'", "--set", "training.epochs=1",
                    *NO_FLOORS)
    assert again.exit_code == 1, again.output
    assert again.output.count("(cached)") == 10

    # Without the cache, ingestion runs again and every image lands in the
    # same split.
    fresh = invoke("ingest", data, "--output", out, "--set", "data.max_bad_fraction=0.05",
                   "--set", "pipeline.name='e2e'", "--set", "pipeline.enable_cache=false")
    assert fresh.exit_code == 0, fresh.output
    rerun_dir = artifact_dir(out, "e2e", "ImageExampleGen", "examples")
    assert rerun_dir != examples_dir

    def ids(directory):
        return {split.name: {e.features.feature["source_id"].bytes_list.value[0]
                             for e in read_examples(split)}
                for split in directory.iterdir() if split.is_dir()}
    assert ids(rerun_dir) == ids(examples_dir)


def test_too_many_bad_files_stop_ingestion_and_leave_no_examples(tmp_path):
    data = write_class_tree(tmp_path / "data", per_class=10)
    for i in range(3):
        (data / "circle" / f"bad{i}.png").write_text("not an image")
    out = tmp_path / "out"
    result = invoke("ingest", data, "--output", out, "--set", "pipeline.name='bad'")
    assert result.exit_code == 1
    assert "3 of 23 inputs (13.04%) could not be read" in result.output
    assert "--max-bad-fraction" in result.output
    # TFX deletes a failed execution's outputs; the report is kept aside.
    kept = out / "pipelines" / "bad" / "ImageExampleGen" / "failed"
    [quarantine] = list(kept.rglob("quarantine.csv"))
    assert str(quarantine) in result.output.replace("\n", "")
    assert quarantine.read_text().count("bad,") == 3
    examples = out / "pipelines" / "bad" / "ImageExampleGen" / "examples"
    assert not any(examples.rglob("*.gz"))
    # A looser limit lets the same data through.
    ok = invoke("ingest", data, "--output", out, "--max-bad-fraction", "0.2",
                "--set", "pipeline.name='bad'")
    assert ok.exit_code == 0, ok.output
    assert "3 bad (13.04%" in ok.output


def test_train_and_val_folders_are_the_splits_and_eval_is_carved_from_train(tmp_path):
    data = tmp_path / "photos"
    write_class_tree(data / "Train", per_class=12, classes=("ants", "bees"))
    write_class_tree(data / "val", per_class=4, classes=("ants", "bees"))
    out = tmp_path / "out"
    result = invoke("ingest", data, "--output", out, "--set", "pipeline.name='layouts'")
    assert result.exit_code == 0, result.output
    examples = artifact_dir(out, "layouts", "ImageExampleGen", "examples")
    counts = {split.name: len(read_examples(split)) for split in examples.iterdir() if split.is_dir()}
    assert counts["Split-validation"] == 8                   # the val folder, whole
    assert counts["Split-train"] + counts["Split-eval"] == 24 and counts["Split-eval"] > 0
    assert "split validation: 8 examples" in result.output

    write_class_tree(data / "val", per_class=1, classes=("wasps",))
    refused = invoke("ingest", data, "--output", out, "--set", "pipeline.name='layouts'")
    assert refused.exit_code == 1
    assert "disagree on the classes" in refused.output and "Train has no wasps" in refused.output


def test_single_class_and_empty_sources_are_clear_errors(tmp_path):
    single = write_class_tree(tmp_path / "single", per_class=3, classes=("circle",))
    result = invoke("ingest", single, "--output", tmp_path / "o1")
    assert result.exit_code == 1 and "a classifier needs at least two" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke("ingest", tmp_path / "empty", "--output", tmp_path / "o2")
    assert result.exit_code == 1 and "no class folders" in result.output


def test_npz_ingestion_keeps_float_pixels_and_spans(tmp_path):
    x = np.stack([np.asarray(shape_image("circle" if i % 2 else "square", seed=i))
                  for i in range(40)]).astype(np.float32) / 255.0
    np.savez(tmp_path / "drop.npz", x=x, y=np.arange(40) % 2)
    out = tmp_path / "out"
    result = invoke("ingest", tmp_path / "drop.npz", "--output", out, "--span", 3,
                    "--set", "pipeline.name='npz'")
    assert result.exit_code == 0, result.output
    assert "(npz, span 3)" in result.output
    examples_dir = artifact_dir(out, "npz", "ImageExampleGen", "examples")
    example = read_examples(examples_dir / "Split-train")[0].features.feature
    assert example["pixel_dtype"].bytes_list.value == [b"float32"]
    assert max(example["image"].float_list.value) <= 1.0
    # Later stages (the validation gate) read the span from the artifact.
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(out / "metadata.sqlite")
    store = metadata_store.MetadataStore(connection)
    [artifact] = [a for a in store.get_artifacts_by_type("Examples")]
    assert artifact.custom_properties["span"].int_value == 3
    assert artifact.custom_properties["input_base"].string_value == str(tmp_path)
    assert json.loads(artifact.custom_properties["image_shape"].string_value) == [32, 32, 3]


def test_span_pattern_takes_the_latest_span(tmp_path):
    write_class_tree(tmp_path / "drops" / "span-1", per_class=4)
    write_class_tree(tmp_path / "drops" / "span-2", per_class=6)
    result = invoke("ingest", tmp_path / "drops" / "span-{SPAN}", "--output", tmp_path / "out",
                    "--set", "pipeline.name='spans'")
    assert result.exit_code == 0, result.output
    assert "span 2" in result.output and "split train" in result.output
    report = json.loads((artifact_dir(tmp_path / "out", "spans", "ImageExampleGen", "report")
                         / "ingestion_report.json").read_text())
    assert report["examples"] == 12 and report["span"] == 2


def test_cifar10_subset_from_shared_datasets(cifar_subset, tmp_path):
    result = invoke("ingest", cifar_subset, "--config", REPO / "configs" / "cifar10.toml",
                    "--output", tmp_path / "out", "--set", "pipeline.name='cifar'")
    assert result.exit_code == 0, result.output
    report = json.loads((artifact_dir(tmp_path / "out", "cifar", "ImageExampleGen", "report")
                         / "ingestion_report.json").read_text())
    assert report["examples"] == 500 and report["bad"] == 0
    assert report["conversions"] == {}
    per_class = {}
    for split in report["splits"].values():
        for name, count in split["per_class"].items():
            per_class[name] = per_class.get(name, 0) + count
    assert per_class == {name: 50 for name in report["class_names"]}
    assert report["class_names"][0] == "airplane"


@pytest.mark.parametrize("command", [[], ["run"], ["ingest"]])
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_bad_config_is_a_usage_error_naming_the_key(tmp_path):
    result = invoke("run", "--set", "image.channels=4", "--output-root", tmp_path)
    assert result.exit_code == 2 and "image.channels: Input should be 1 or 3" in result.output


def test_trainer_epochs_reach_the_console_as_they_happen_and_quiet_hides_them(tmp_path):
    """The real CLI in a subprocess: its stdout read line by line, with arrival times."""
    import re
    import subprocess
    import sys
    import threading
    import time

    script = Path(sys.executable).with_name("imgpipe")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "imgpipe.pipeline.cli"]
    env = {k: v for k, v in os.environ.items()    # the built-in quickstart, all under tmp_path
           if k not in ("IMGPIPE_CONFIG", "IMGPIPE_REGISTRY_URL", "MLFLOW_TRACKING_URI",
                        "IMGPIPE_PREDICTION_LOG_URL")}

    def run_cli(*flags):
        process = subprocess.Popen(
            [*command, *flags, "run", "--set", "training.epochs=3", "--output-root",
             str(tmp_path / "out"), *NO_FLOORS],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1)
        watchdog = threading.Timer(240, process.kill)
        watchdog.start()
        try:
            lines = [(time.monotonic(), line.rstrip("\n")) for line in process.stdout]
        finally:
            watchdog.cancel()
        assert process.wait() == 0, "\n".join(text for _, text in lines)
        return lines

    epoch_line = re.compile(r"^\s+epoch (\d+)/3  loss \d\.\d{4}  accuracy \d\.\d{3}  "
                            r"val_loss \d+\.\d{4}  val_accuracy \d\.\d{3}  \d+\.\ds  "
                            r"best epoch [1-3] \(val_accuracy \d\.\d{3}\)$")
    lines = run_cli()
    output = "\n".join(text for _, text in lines)
    texts = [text for _, text in lines]
    start = texts.index("[start] Trainer")
    done = next(i for i, text in enumerate(texts) if text.startswith("[done ] Trainer"))
    epochs = [(i, int(match.group(1))) for i, text in enumerate(texts)
              if (match := epoch_line.match(text))]
    assert [n for _, n in epochs] == [1, 2, 3], output
    assert start < epochs[0][0] < epochs[-1][0] < done, output
    # Printed while the Trainer ran (it still saves the model afterwards), not at its end.
    assert lines[done][0] - lines[epochs[0][0]][0] > 0.5, output
    assert "Epoch 1/3" not in output          # Keras' own lines stay in the log file
    assert "stages finished" in output

    # --quiet (the cache now skips the Trainer): no stage or epoch lines, the summary stays.
    quiet = "\n".join(text for _, text in run_cli("--quiet"))
    assert "[start]" not in quiet and "[done" not in quiet, quiet
    assert not re.search(r"epoch \d+/3", quiet), quiet
    assert "Trained " in quiet and "stages finished" in quiet, quiet
