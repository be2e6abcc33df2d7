"""Publishing a blessed model: serving directory, registry row, MLflow, champion.

The protocol (each step idempotent, so a retried push completes an
interrupted one and never duplicates it):

1. Registry: insert the row for `model_uid` with the next version, or find
   the existing row (the version is fixed from here on). A row whose
   `mlflow_model_version` is NULL is a push in progress or interrupted.
2. Serving directory `<serving_root>/<model_name>/<version>/`: copied to a
   temporary sibling and renamed into place, so TF Serving never sees a
   half-copied model; skipped when the directory is already complete.
3. MLflow: find the model version tagged with `model_uid`, else find the
   run by the same tag or create it; a run that is not FINISHED (an attempt
   died while logging) gets its params, metrics and artifacts logged again
   (same values; artifacts overwrite) and is then set FINISHED. Then the
   model is registered with that tag against the finished run.
4. Registry: record the MLflow run id and version on the row.
5. Champion: promote in the registry (only a `registered` row, so a re-push
   never re-promotes a version that was archived or rolled back, and only if
   the champion is still the one the model was evaluated against) and,
   inside the same transaction, move MLflow's `champion` alias to the same
   version; if MLflow fails the promotion rolls back. Re-running makes the
   alias agree again.

A failure anywhere leaves at most a row without MLflow ids and/or an MLflow
version without a row pointing at it; re-running the same push finds both
by `model_uid` and finishes with exactly one consistent version.
"""
from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any

from imgpipe.registry import mlflow_sync, store

SAVED_MODEL_FILE = "saved_model.pb"


@dataclasses.dataclass
class PushResult:
    model_uid: str
    model_name: str
    version: int
    created: bool            # False: the model was already registered (re-push)
    serving_dir: str
    mlflow_run_id: str
    mlflow_version: int
    champion: bool
    note: str = ""


def serving_dir(serving_root: str, model_name: str, version: int) -> str:
    return os.path.join(serving_root, model_name, str(version))


def copy_saved_model(source_dir: str, destination: str) -> None:
    """Atomic-rename copy of a SavedModel directory (local or any fileio scheme)."""
    from tfx.dsl.io import fileio
    from tfx.utils import io_utils
    if fileio.exists(os.path.join(destination, SAVED_MODEL_FILE)):
        return
    parent = os.path.dirname(destination)
    fileio.makedirs(parent)
    staging = os.path.join(parent, f".{os.path.basename(destination)}.{uuid.uuid4().hex}.tmp")
    io_utils.copy_dir(source_dir, staging)
    if fileio.exists(os.path.join(destination, SAVED_MODEL_FILE)):
        fileio.rmtree(staging)  # a concurrent push of the same model got there first
        return
    if fileio.exists(destination):  # an empty/partial leftover of a crashed copy
        fileio.rmtree(destination)
    fileio.rename(staging, destination)


def publish(registry_url: str, tracking_uri: str, serving_root: str, saved_model_dir: str,
            new: store.NewVersion, record: mlflow_sync.RunRecord, promote: bool = True,
            expected_champion: Any = None) -> PushResult:
    """Runs the protocol above. `expected_champion`: the champion's uid (or
    None) the model was compared against at evaluation."""
    engine = store.require_schema(registry_url)
    row, created = store.register(
        engine, new, lambda version: serving_dir(serving_root, new.model_name, version))
    copy_saved_model(saved_model_dir, row.artifact_path)
    run_id, mlflow_version = mlflow_sync.log_version(
        tracking_uri, new.model_name, new.model_uid, row.version, row.artifact_path, record)
    store.attach_mlflow(engine, new.model_uid, run_id, mlflow_version)

    is_champion, note = False, ""
    if promote:
        is_champion, why_not = store.promote(
            engine, new.model_uid, expected_champion=expected_champion,
            in_step=alias_mover(tracking_uri))
        if not is_champion:
            note = f"{why_not}; to promote it anyway: imgpipe registry promote {new.model_uid}"
    return PushResult(new.model_uid, new.model_name, row.version, created, row.artifact_path,
                      run_id, mlflow_version, is_champion, note)


def alias_mover(tracking_uri: str):
    """`in_step` for store.promote/rollback: MLflow's alias follows the champion."""
    def move(row) -> None:
        if row.mlflow_model_version is None:
            raise store.RegistryError(
                f"{row.model_uid} has no MLflow model version yet (its push did not finish); "
                "re-run the push before promoting it")
        mlflow_sync.set_champion(tracking_uri, row.model_name, row.mlflow_model_version)
    return move
