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
   the champion is still the one the model was evaluated against; only a
   SavedModel that exists with its serving signatures), commit, and then,
   outside the transaction, point MLflow's `champion` alias at the
   registry's champion (`follow_champion`). No registry lock is held across
   an MLflow call, so an unreachable MLflow blocks no other writer. If
   MLflow fails there, the registry (the source of truth) has moved and the
   alias lags: `imgpipe registry list` flags it, and `imgpipe registry
   repair` or the next push of that model name moves the alias.

A failure anywhere leaves at most a row without MLflow ids and/or an MLflow
version without a row pointing at it; re-running the same push finds both
by `model_uid` and finishes with exactly one consistent version.
"""
from __future__ import annotations

import dataclasses
import os
import time
import uuid
from typing import Any, Callable, List, Optional

from imgpipe.contract import SIGNATURES
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
    # MLflow's errors quote its URL, password included: re-raised masked, unchained.
    with store.masked_errors(f"logging {new.model_uid} to MLflow at {store.mask_url(tracking_uri)}"):
        run_id, mlflow_version = mlflow_sync.log_version(
            tracking_uri, new.model_name, new.model_uid, row.version, row.artifact_path, record)
    store.attach_mlflow(engine, new.model_uid, run_id, mlflow_version)

    is_champion, note = False, ""
    if promote:
        is_champion, why_not = store.promote(
            engine, new.model_uid, expected_champion=expected_champion,
            check=promotable(serving_root))
        if not is_champion:
            note = f"{why_not}; to promote it anyway: imgpipe registry promote {new.model_uid}"
    follow_champion(engine, tracking_uri, new.model_name)   # masks MLflow's errors itself
    return PushResult(new.model_uid, new.model_name, row.version, created, row.artifact_path,
                      run_id, mlflow_version, is_champion, note)


# -- the champion's checks and MLflow's alias ---------------------------------

# The signatures a server and the MLflow pyfunc call: a champion must declare them.
SERVING_SIGNATURES = (SIGNATURES.pixels, SIGNATURES.bytes)


def artifact_dir(row, serving_root: Optional[str]) -> str:
    """Where the row's SavedModel is: its recorded path, or, when that is gone
    (runs/ copied or restored elsewhere), the same <model_name>/<version> under
    `serving_root` if a SavedModel is there. The recorded path otherwise."""
    import tensorflow as tf
    if tf.io.gfile.exists(os.path.join(row.artifact_path, SAVED_MODEL_FILE)) or not serving_root:
        return row.artifact_path
    moved = serving_dir(serving_root, row.model_name, row.version)
    if tf.io.gfile.exists(os.path.join(moved, SAVED_MODEL_FILE)):
        return moved
    return row.artifact_path


def verify_saved_model(path: str, what: str) -> None:
    """Refuses (RegistryError naming the path) a SavedModel that is missing or
    lacks a serving signature; reads saved_model.pb only, loads nothing."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    graph_file = os.path.join(path, SAVED_MODEL_FILE)
    if not tf.io.gfile.exists(graph_file):
        raise store.RegistryError(f"{what}: no SavedModel at {path} ({SAVED_MODEL_FILE} is "
                                  "missing); restore it there or push the model again")
    saved_model = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(graph_file, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file
        raise store.RegistryError(f"{what}: {graph_file} is not a readable SavedModel "
                                  f"({store.describe_error(error)})") from None
    declared = {key for graph in saved_model.meta_graphs for key in graph.signature_def}
    missing = [name for name in SERVING_SIGNATURES if name not in declared]
    if missing:
        raise store.RegistryError(f"{what}: the SavedModel at {path} lacks the serving "
                                  f"signature(s) {', '.join(missing)} (it declares "
                                  f"{', '.join(sorted(declared)) or 'none'})")


def promotable(serving_root: Optional[str]) -> Callable[[Any], None]:
    """`check` for store.promote/rollback: the new champion has an MLflow
    version and a SavedModel a server can load."""
    import tensorflow  # noqa: F401 - imported now, not while holding the registry lock

    def check(row) -> None:
        what = f"{row.model_uid} ({row.model_name} version {row.version}) cannot be champion"
        if row.mlflow_model_version is None:
            raise store.RegistryError(f"{what}: it has no MLflow model version yet (its push "
                                      "did not finish); re-run the push before promoting it")
        verify_saved_model(artifact_dir(row, serving_root), what)
    return check


def follow_champion(engine, tracking_uri: str, model_name: str) -> Optional[int]:
    """Points MLflow's alias at the registry's champion (the source of truth),
    outside any registry transaction. Re-reads the champion after moving the
    alias and moves it again if a concurrent promotion changed it meanwhile,
    so the last writer leaves the alias on the last committed champion.
    Returns the alias's MLflow version (None: no champion with one)."""
    for _ in range(_FOLLOW_ROUNDS):
        row = store.champion(engine, model_name)
        target = row.mlflow_model_version if row is not None else None
        if target is None:
            return None
        try:
            mlflow_sync.set_champion(tracking_uri, model_name, target)
        except Exception as error:  # noqa: BLE001 - MLflow/network: reported masked
            if _lost_a_race(error):
                time.sleep(0.1)        # another writer moved the alias: read the champion again
                continue
            raise store.RegistryError(
                f"{row.model_uid} is {model_name}'s champion in the registry, but MLflow's alias "
                f"{model_name}@{mlflow_sync.CHAMPION_ALIAS} could not follow it "
                f"({store.describe_error(error)}); once MLflow at "
                f"{store.mask_url(tracking_uri)} is reachable: imgpipe registry repair") from None
        after = store.champion(engine, model_name)
        if after is not None and after.model_uid == row.model_uid:
            return target
    raise store.RegistryError(f"{model_name}'s champion kept moving while MLflow's alias "
                              "followed it; run imgpipe registry repair")


_FOLLOW_ROUNDS = 5


def _lost_a_race(error: BaseException) -> bool:
    """MLflow's SQL store moves an alias by delete + insert: two writers moving
    it at once fail one of them on the unique key (or the SQLite lock)."""
    text = str(error)
    return "UNIQUE constraint failed" in text or "database is locked" in text \
        or "duplicate key value" in text


def _champions(engine, model_name: Optional[str]):
    return store.list_versions(engine, model_name=model_name, status=store.CHAMPION)


def disagreements(engine, tracking_uri: str, model_name: Optional[str] = None) -> List[str]:
    """One line per model name whose MLflow alias is not on the registry's champion."""
    found = []
    for row in _champions(engine, model_name):
        alias = mlflow_sync.champion_version(tracking_uri, row.model_name)
        if row.mlflow_model_version is not None and alias != row.mlflow_model_version:
            found.append(f"{row.model_name}: registry champion {row.model_uid} (version "
                         f"{row.version}) is MLflow version {row.mlflow_model_version}, but "
                         f"{row.model_name}@{mlflow_sync.CHAMPION_ALIAS} -> "
                         f"{'nothing' if alias is None else f'version {alias}'}")
    return found


def repair(engine, tracking_uri: str, model_name: Optional[str] = None) -> List[str]:
    """Moves every lagging MLflow alias to the registry's champion; says what it did."""
    done = []
    for row in _champions(engine, model_name):
        before = mlflow_sync.champion_version(tracking_uri, row.model_name)
        after = follow_champion(engine, tracking_uri, row.model_name)
        alias = f"{row.model_name}@{mlflow_sync.CHAMPION_ALIAS}"
        if after is None:
            done.append(f"{row.model_name}: champion {row.model_uid} has no MLflow version "
                        "(its push did not finish): re-run its push")
        elif before == after:
            done.append(f"{row.model_name}: {alias} -> version {after}, already in agreement")
        else:
            done.append(f"{row.model_name}: {alias} moved to version {after} (was "
                        f"{'nothing' if before is None else f'version {before}'}), "
                        f"the registry's champion {row.model_uid}")
    return done
