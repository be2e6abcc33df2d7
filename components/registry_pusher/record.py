"""What a push records, from the run's own files; pure functions.

Sources: the evaluation report (accuracy, per-class F1, parity, champion
comparison), the training record the Trainer saved in the SavedModel's
assets (configuration, augmentation, data and schema hashes, library
versions) and the SavedModel itself (its content hash is the model_uid).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
from typing import Any, Dict, Iterable, Optional, Tuple

from imgpipe.contract import ImageSpec
from imgpipe.registry import mlflow_sync, store


def content_digest(files: Iterable[Tuple[str, bytes]]) -> str:
    """sha256 over (relative path, content) pairs in path order."""
    digest = hashlib.sha256()
    for relative, content in sorted(files):
        digest.update(relative.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def saved_model_files(model_dir: str) -> Iterable[Tuple[str, bytes]]:
    from tfx.dsl.io import fileio
    for root, _dirs, names in fileio.walk(model_dir):
        for name in names:
            path = os.path.join(root, name)
            with fileio.open(path, "rb") as handle:
                yield os.path.relpath(path, model_dir), handle.read()


def model_uid(model_name: str, digest: str) -> str:
    """Same model, same uid: a re-push is recognised whatever run it comes from."""
    return f"{model_name}-{digest[:16]}"


def new_version(*, uid: str, model_name: str, report: Dict[str, Any], training: Dict[str, Any],
                trained_at: dt.datetime, pipeline_run_id: Optional[str],
                statistics_path: Optional[str] = None,
                contract: Optional[Dict[str, Any]] = None) -> store.NewVersion:
    parity = report.get("parity") or {}
    evaluated, served = parity.get("evaluated_accuracy"), parity.get("served_accuracy")
    model, weights = training.get("model", {}), training.get("weights") or {}
    return store.NewVersion(
        model_uid=uid, model_name=model_name, architecture_type=architecture(training),
        val_accuracy=float(report["accuracy"]), training_date=trained_at,
        # NaN is not JSON (PostgreSQL refuses it); an undefined F1 is null.
        per_class_f1={row["name"]: row["f1"] if row["f1"] == row["f1"] else None
                      for row in report["classes"]},
        blessed=bool(report["blessed"]),
        data_fingerprint=training["training_data_sha256"], schema_hash=training["schema_sha256"],
        training_config={key: training[key] for key in
                         ("model", "fit", "class_names", ImageSpec.RECORD_KEY, "input",
                          "normalization", "weights", "phases", "epochs_run", "best_epoch")
                         if key in training},
        augmentation_config=training["augmentation"],
        library_versions=training["library_versions"], pipeline_run_id=pipeline_run_id,
        serving_accuracy=served,
        parity_accuracy_gap=abs(served - evaluated) if None not in (served, evaluated) else None,
        parity_disagreement=parity.get("disagreement"),
        serving_baseline=report.get("serving_baseline"), statistics_path=statistics_path,
        parameter_count=model.get("parameters"), backbone=model.get("backbone"),
        weights_source=weights.get("source"), weights_sha256=weights.get("sha256"),
        preprocessing_contract=contract, fuzz_report=report.get("fuzz"))


def architecture(training: Dict[str, Any]) -> str:
    """The registry's architecture_type: the built-in network's name, or the user's function."""
    model = training.get("model", {})
    user = model.get("user_module") or {}
    if user:
        return f"user:{user['module']}:{user['function']}"[:100]
    return model.get("architecture", "cnn")


def _flatten(prefix: str, tree: Dict[str, Any]) -> Dict[str, str]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten(name, value))
        else:
            flat[name] = str(value)
    return flat


def run_record(*, new: store.NewVersion, report: Dict[str, Any], experiment: str,
               run_name: str, artifacts: Dict[str, str],
               artifact_root: Optional[str]) -> mlflow_sync.RunRecord:
    """MLflow params (hyperparameters, augmentation), metrics, artifacts and tags."""
    config = new.training_config
    params = {**_flatten("model", config.get("model", {})), **_flatten("fit", config.get("fit", {})),
              **_flatten("augmentation", new.augmentation_config),
              **_flatten("weights", config.get("weights") or {}),
              "normalization": (config.get("normalization") or {}).get("name", "unit"),
              "phases": ",".join(f"{p['phase']}:{p['epochs_run']}" for p in config.get("phases", [])),
              **_flatten("image", ImageSpec.from_record(config).to_dict()),
              "class_names": ",".join(config.get("class_names", [])),
              "data_fingerprint": new.data_fingerprint, "schema_hash": new.schema_hash}
    metrics = {"accuracy": new.val_accuracy}
    for row in report["classes"]:
        for metric in ("f1", "precision", "recall"):
            if row[metric] == row[metric]:  # NaN is not a metric value
                metrics[f"{metric}.{row['name']}"] = row[metric]
    for key in ("serving_accuracy", "parity_accuracy_gap", "parity_disagreement"):
        if getattr(new, key) is not None:
            metrics[key] = getattr(new, key)
    champion = report.get("champion") or {}
    if champion.get("champion_accuracy") is not None:
        metrics["champion_accuracy_same_inputs"] = champion["champion_accuracy"]
    tags = {"imgpipe.model_name": new.model_name, "imgpipe.pipeline_run_id": new.pipeline_run_id or "",
            "imgpipe.architecture_type": new.architecture_type,
            **{f"library.{name}": version for name, version in new.library_versions.items()}}
    return mlflow_sync.RunRecord(experiment_name=experiment, run_name=run_name, params=params,
                                 metrics=metrics, artifacts=artifacts, tags=tags,
                                 artifact_root=artifact_root)
