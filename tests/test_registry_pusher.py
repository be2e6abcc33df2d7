"""What the Pusher records (pure functions, no pipeline)."""
import datetime as dt

from imgpipe.components.registry_pusher import record

REPORT = {
    "blessed": True, "accuracy": 0.9,
    "classes": [{"name": "cat", "f1": 0.8, "precision": 0.7, "recall": 0.95},
                {"name": "dog", "f1": float("nan"), "precision": float("nan"), "recall": 0.0}],
    "parity": {"evaluated_accuracy": 0.9, "served_accuracy": 0.895, "disagreement": 0.01},
    "champion": {"champion_accuracy": 0.88},
}
TRAINING = {
    "model": {"conv_filters": [32, 64], "dropout": 0.3}, "fit": {"epochs": 5, "seed": 0},
    "augmentation": {"horizontal_flip": True, "translation": 0.1, "rotation": 0.0},
    "class_names": ["cat", "dog"], "input": "uint8",
    "image_spec": {"height": 32, "width": 32, "channels": 3, "resize_method": "bilinear",
                   "antialias": True},
    "training_data_sha256": "d" * 64, "schema_sha256": "s" * 64,
    "library_versions": {"tfx": "1.16.0"}, "history": {"loss": [1.0]},
}


def test_content_digest_is_the_models_identity():
    files = [("saved_model.pb", b"graph"), ("variables/variables.index", b"weights")]
    assert record.content_digest(files) == record.content_digest(list(reversed(files)))
    assert record.content_digest(files) != record.content_digest(
        [("saved_model.pb", b"graph"), ("variables/variables.index", b"other weights")])
    assert record.model_uid("cnn", "ab" * 32) == "cnn-" + "ab" * 8


def test_new_version_and_run_record_from_the_runs_files():
    trained = dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc)
    new = record.new_version(uid="cnn-1", model_name="cnn", report=REPORT, training=TRAINING,
                             trained_at=trained, pipeline_run_id="run-7")
    assert (new.val_accuracy, new.blessed, new.training_date) == (0.9, True, trained)
    assert new.per_class_f1 == {"cat": 0.8, "dog": None}
    assert new.parity_accuracy_gap == 0.9 - 0.895 and new.serving_accuracy == 0.895
    assert "history" not in new.training_config          # big, and in MLflow already
    assert new.augmentation_config["translation"] == 0.1

    run = record.run_record(new=new, report=REPORT, experiment="exp", run_name="r",
                            artifacts={}, artifact_root=None)
    assert run.params["model.conv_filters"] == "[32, 64]" and run.params["fit.epochs"] == "5"
    assert run.params["augmentation.translation"] == "0.1"
    assert run.metrics["f1.cat"] == 0.8 and "f1.dog" not in run.metrics   # NaN is left out
    assert run.metrics["recall.dog"] == 0.0
    assert run.metrics["champion_accuracy_same_inputs"] == 0.88
    assert run.tags["library.tfx"] == "1.16.0"


def test_a_fine_tuned_backbone_records_architecture_weights_and_phases():
    training = {**TRAINING,
                "model": {"architecture": "mobilenet_v2", "backbone": "mobilenet_v2",
                          "parameters": 2_260_546, "model_args": {}},
                "fit": {"epochs": 3, "fine_tune_layers": 30, "fine_tune_epochs": 2,
                        "fine_tune_lr_factor": 0.1},
                "augmentation": {"horizontal_flip": True, "crop_padding": 4, "cutout": 8},
                "weights": {"source": "gs://b/backbone_weights.h5", "sha256": "w" * 64,
                            "loaded_into": "backbone"},
                "normalization": {"name": "tf"},
                "phases": [{"phase": "head", "epochs_run": 3}, {"phase": "fine-tune", "epochs_run": 2}]}
    new = record.new_version(uid="m-1", model_name="m", report=REPORT, training=training,
                             trained_at=dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc),
                             pipeline_run_id=None)
    assert (new.architecture_type, new.parameter_count, new.backbone) == (
        "mobilenet_v2", 2_260_546, "mobilenet_v2")
    assert (new.weights_source, new.weights_sha256) == ("gs://b/backbone_weights.h5", "w" * 64)
    assert new.training_config["phases"][1]["phase"] == "fine-tune"
    run = record.run_record(new=new, report=REPORT, experiment="exp", run_name="r",
                            artifacts={}, artifact_root=None)
    assert run.params["weights.sha256"] == "w" * 64 and run.params["normalization"] == "tf"
    assert run.params["phases"] == "head:3,fine-tune:2"
    assert run.params["fit.fine_tune_layers"] == "30" and run.params["augmentation.cutout"] == "8"
    assert run.tags["imgpipe.architecture_type"] == "mobilenet_v2"
    user = record.architecture({"model": {"architecture": "/p/my_models.py:build",
                                          "user_module": {"module": "my_models", "function": "build"}}})
    assert user == "user:my_models:build"
