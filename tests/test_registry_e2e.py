"""The pipeline's push: serving directory, model_registry row and MLflow, then
a cached re-run, a re-push of the same model and a worse candidate."""
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO, shapes_tree
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e
LOW_FLOORS = ["--set", "evaluation.f1_floor=0.25", "--set", "evaluation.accuracy_floor=0.25"]
CONFIG = REPO / "configs" / "quickstart.toml"


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def latest(directory: Path) -> Path:
    return max(directory.iterdir(), key=lambda p: int(p.name))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    # 150 per class and 20 epochs: a clearly good champion (0.9+); 60 x 12
    # gave a 0.5 model whose weakest class sat at the floor.
    data = shapes_tree(root / "data", per_class=150, seed=5)
    out = root / "out"
    args = ["run", "--config", CONFIG, "--data", data, "--output-root", out,
            "--set", "training.epochs=20", *LOW_FLOORS]
    return {"result": invoke(*args), "args": args, "data": data, "out": out,
            "pipeline": out / "pipelines" / "imgpipe-quickstart"}


def _registry(out: Path):
    from imgpipe.registry import store
    return store.require_schema(f"sqlite:///{out / 'registry.db'}")


def test_a_blessed_run_pushes_to_serving_registry_and_mlflow(first):
    import tensorflow as tf

    from imgpipe.registry import mlflow_sync, store

    result, out = first["result"], first["out"]
    assert result.exit_code == 0, result.output
    for stage in ("ChampionResolver", "RegistryPusher"):
        assert f"[done ] {stage}" in result.output
    assert "champion: none in the registry yet" in result.output
    [row] = store.list_versions(_registry(out))
    assert f"Push: {row.model_uid} = shapes-cnn version 1 (champion)" in result.output

    report = json.loads((latest(first["pipeline"] / "EvaluationGate" / "report")
                         / "evaluation_report.json").read_text())
    assert row.status == "champion" and row.version == 1 and row.blessed
    assert row.val_accuracy == pytest.approx(report["accuracy"])
    assert row.per_class_f1 == {c["name"]: pytest.approx(c["f1"]) for c in report["classes"]}
    assert row.serving_accuracy == pytest.approx(report["parity"]["served_accuracy"])
    assert row.schema_hash == hashlib.sha256((REPO / "schemas" / "quickstart.pbtxt").read_bytes()).hexdigest()
    assert len(row.data_fingerprint) == 64 and row.training_config["fit"]["epochs"] == 20
    assert row.augmentation_config == {"horizontal_flip": True, "crop_padding": 0, "cutout": 0,
                                       "translation": 0.0, "rotation": 0.0}
    assert row.library_versions["tfx"] == "1.16.0" and row.pipeline_run_id
    assert row.architecture_type == "cnn"

    serving = out / "serving" / "shapes-cnn" / "1"
    assert row.artifact_path == str(serving)
    assert "serving_bytes" in tf.saved_model.load(str(serving)).signatures
    assert not [p for p in serving.parent.iterdir() if p.name.startswith(".")]  # no staging left

    tracking = f"sqlite:///{out / 'mlflow.db'}"
    assert mlflow_sync.versions_with_uid(tracking, "shapes-cnn") == [(1, row.model_uid)]
    assert mlflow_sync.champion_version(tracking, "shapes-cnn") == row.mlflow_model_version == 1
    client = mlflow_sync.client(tracking)
    run = client.get_run(row.mlflow_run_id)
    assert run.data.params["fit.epochs"] == "20"
    assert run.data.params["augmentation.horizontal_flip"] == "True"
    assert run.data.metrics["accuracy"] == pytest.approx(row.val_accuracy)
    assert {f"f1.{c}" for c in row.per_class_f1} <= set(run.data.metrics)
    assert "parity_disagreement" in run.data.metrics
    logged = {a.path for folder in ("evaluation", "schema", "validation", "training", "model")
              for a in client.list_artifacts(row.mlflow_run_id, folder)}
    for path in ("evaluation/evaluation_report.json", "evaluation/confusion_matrix.png",
                 "schema/schema.pbtxt", "validation/statistics.html",
                 "training/training_config.json", "model/MLmodel"):
        assert path in logged


def test_a_cached_rerun_and_a_repush_add_nothing(first, tmp_path):
    from tfx.types import standard_artifacts

    from imgpipe.components.evaluation_gate.component import EvaluationReport
    from imgpipe.components.registry_pusher import executor
    from imgpipe.pipeline.config import load_config, parse_set_options
    from imgpipe.pipeline.pipeline import create_pipeline
    from imgpipe.registry import mlflow_sync, store

    again = invoke(*first["args"])
    assert again.exit_code == 0 and again.output.count("(cached)") == 10, again.output
    assert len(store.list_versions(_registry(first["out"]))) == 1

    # The Pusher's executor once more on the same model: nothing new anywhere.
    config = load_config(CONFIG, parse_set_options(
        [f"pipeline.output_root='{first['out']}'", "training.epochs=20"]))
    [pusher] = [c for c in create_pipeline(config, source=str(first["data"])).components
                if type(c).__name__ == "RegistryPusher"]
    model = standard_artifacts.Model()
    model.uri = str(latest(first["pipeline"] / "Trainer" / "model"))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(latest(first["pipeline"] / "EvaluationGate" / "blessing"))
    blessing.set_int_custom_property("blessed", 1)
    report = EvaluationReport()
    report.uri = str(latest(first["pipeline"] / "EvaluationGate" / "report"))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    executor.Executor().Do({"model": [model], "blessing": [blessing], "evaluation_report": [report]},
                           {"pushed_model": [pushed]}, pusher.exec_properties)
    push = json.loads((tmp_path / "pushed" / "push.json").read_text())
    assert push["created"] is False and push["version"] == 1 and push["champion"] is True
    assert len(store.list_versions(_registry(first["out"]))) == 1
    assert len(mlflow_sync.versions_with_uid(f"sqlite:///{first['out'] / 'mlflow.db'}",
                                             "shapes-cnn")) == 1


def test_a_worse_candidate_is_not_blessed_against_the_champion(first):
    from imgpipe.registry import store
    [champion] = store.list_versions(_registry(first["out"]))
    worse = invoke("run", "--config", CONFIG, "--data", first["data"], "--output-root",
                   first["out"], "--set", "training.epochs=1", "--set", "evaluation.f1_floor=0",
                   "--set", "evaluation.accuracy_floor=0")
    assert worse.exit_code == 1, worse.output
    failures = worse.output.split("nothing was pushed:")[1]
    assert f"below champion {champion.model_uid} (version 1)" in failures
    assert "on the same evaluation inputs (allowed drop 1.0)" in failures
    assert "Push: nothing pushed (the model is not blessed)" in worse.output
    rows = store.list_versions(_registry(first["out"]))
    assert [(r.model_uid, r.status) for r in rows] == [(champion.model_uid, "champion")]
