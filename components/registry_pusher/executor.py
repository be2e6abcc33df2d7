"""TFX executor of RegistryPusher: blessed models only, through publish's protocol."""
from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from imgpipe.components.champion_resolver import resolve
from imgpipe.components.evaluation_gate import report as evaluation_report
from imgpipe.components.evaluation_gate.executor import is_blessed
from imgpipe.components.registry_pusher import record
from imgpipe.components.registry_pusher.settings import PushSettings
from imgpipe.contract import ARTIFACTS
from imgpipe.registry import mlflow_sync, publish, store

MODEL_KEY = "model"
BLESSING_KEY = "blessing"
REPORT_KEY = "evaluation_report"
SCHEMA_KEY = "schema"
VALIDATION_REPORT_KEY = "validation_report"
CHAMPION_KEY = "champion"
STATISTICS_KEY = "statistics"
PUSHED_MODEL_KEY = "pushed_model"


def _read_json(path: str) -> dict:
    with fileio.open(path, "r") as handle:
        return json.loads(handle.read())


def _artifacts(input_dict, report_dir: str, model_dir: str) -> Dict[str, str]:
    """MLflow artifact sub-path -> local file/folder."""
    files = {"evaluation": report_dir,
             "training": ARTIFACTS.training_record_path(model_dir)}
    if input_dict.get(SCHEMA_KEY):
        files["schema"] = artifact_utils.get_single_uri(input_dict[SCHEMA_KEY])
    if input_dict.get(VALIDATION_REPORT_KEY):
        files["validation"] = artifact_utils.get_single_uri(input_dict[VALIDATION_REPORT_KEY])
    return files


def _new_version(input_dict, settings: PushSettings, model_dir: str, report: dict,
                 run_id) -> store.NewVersion:
    """The registry row of this model, from the files the run wrote."""
    training = _read_json(ARTIFACTS.training_record_path(model_dir))
    uid = record.model_uid(settings.model_name,
                           record.content_digest(record.saved_model_files(model_dir)))
    trained_at = dt.datetime.fromtimestamp(
        fileio.stat(os.path.join(model_dir, publish.SAVED_MODEL_FILE)).mtime_nsec / 1e9,
        dt.timezone.utc)
    statistics = (artifact_utils.get_single_uri(input_dict[STATISTICS_KEY])
                  if input_dict.get(STATISTICS_KEY) else None)
    contract_path = ARTIFACTS.contract_path(model_dir)
    contract = _read_json(contract_path) if fileio.exists(contract_path) else None
    return record.new_version(uid=uid, model_name=settings.model_name, report=report,
                              training=training, trained_at=trained_at, pipeline_run_id=run_id,
                              statistics_path=statistics, contract=contract)


def _expected_champion(input_dict):
    """The champion the candidate was compared with (promotion waits if it moved since)."""
    if not input_dict.get(CHAMPION_KEY):
        return None
    champion_dir = artifact_utils.get_single_uri(input_dict[CHAMPION_KEY])
    return resolve.champion_uid(resolve.read(os.path.join(champion_dir, resolve.CHAMPION_FILE)))


def _record_push(pushed: types.Artifact, result, registry_url: str, tracking_uri: str) -> None:
    pushed.set_int_custom_property("pushed", 1)
    pushed.set_string_custom_property("pushed_destination", result.serving_dir)
    pushed.set_string_custom_property("pushed_version", str(result.version))
    pushed.set_string_custom_property("model_uid", result.model_uid)
    pushed.set_int_custom_property("mlflow_model_version", result.mlflow_version)
    pushed.set_int_custom_property("champion", int(result.champion))
    fileio.makedirs(pushed.uri)
    with fileio.open(os.path.join(pushed.uri, ARTIFACTS.push_record), "w") as handle:
        handle.write(json.dumps({**result.__dict__, "registry": store.mask_url(registry_url),
                                 "mlflow": store.mask_url(tracking_uri)}, indent=2) + "\n")


def _publish(registry_url: str, tracking_uri: str, settings: PushSettings, model_dir: str,
             new: store.NewVersion, run, expected_champion):
    """publish.publish; its failures (registry, MLflow, network) become one
    RegistryError line with every URL's password masked, without the chained
    exception whose text may carry the URL in clear."""
    try:
        return publish.publish(registry_url, tracking_uri, settings.serving_root, model_dir,
                               new, run, promote=settings.promote,
                               expected_champion=expected_champion)
    except Exception as error:  # noqa: BLE001 - re-raised, masked, without the chain
        raise store.RegistryError(
            f"push of {new.model_uid} failed (registry {store.mask_url(registry_url)}, MLflow "
            f"{store.mask_url(tracking_uri)}): {_message(error)}; re-running the push "
            "completes it") from None


def _migrate(registry_url: str) -> None:
    try:
        store.migrate(registry_url)
    except Exception as error:  # noqa: BLE001 - re-raised, masked, without the chain
        raise store.RegistryError(f"migrating the registry at {store.mask_url(registry_url)} "
                                  f"failed: {_message(error)}") from None


def _message(error: BaseException) -> str:
    if isinstance(error, store.RegistryError):
        return store.mask_text(str(error))
    return store.describe_error(error)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        settings = PushSettings.from_exec_properties(exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        blessing = artifact_utils.get_single_instance(input_dict[BLESSING_KEY])
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        if not is_blessed(blessing):
            pushed.set_int_custom_property("pushed", 0)
            print("not pushed: the model is NOT BLESSED (see the evaluation report)")
            return

        model_dir = path_utils.serving_model_path(model.uri)
        report_dir = artifact_utils.get_single_uri(input_dict[REPORT_KEY])
        report = _read_json(os.path.join(report_dir, evaluation_report.REPORT_JSON))
        run_id = self._context.pipeline_run_id if self._context else None
        new = _new_version(input_dict, settings, model_dir, report, run_id)

        registry_url = store.resolve_url(settings.registry_url)
        tracking_uri = mlflow_sync.resolve_uri(settings.mlflow_tracking_uri)
        if settings.auto_migrate:
            _migrate(registry_url)
        local_store = not tracking_uri.startswith(("http://", "https://", "databricks"))
        run = record.run_record(
            new=new, report=report, experiment=settings.mlflow_experiment,
            run_name=f"{settings.model_name}-{run_id or new.model_uid}",
            artifacts=_artifacts(input_dict, report_dir, model_dir),
            artifact_root=settings.mlflow_artifact_root if local_store else None)
        result = _publish(registry_url, tracking_uri, settings, model_dir, new, run,
                          _expected_champion(input_dict))
        _record_push(pushed, result, registry_url, tracking_uri)
        state = "champion" if result.champion else "registered"
        print(f"pushed {result.model_uid} as {settings.model_name} version {result.version} "
              f"({state}) to {result.serving_dir}; registry {store.mask_url(registry_url)}; "
              f"MLflow model version {result.mlflow_version}"
              + (f"; {result.note}" if result.note else ""))
