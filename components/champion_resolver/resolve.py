"""Which model a candidate must not be worse than: the registry's champion.

Pure logic over the registry; the TFX glue is executor.py. This replaces
TFX's Resolver (which open-source Kubeflow Pipelines cannot run) with a
plain read of the registry, the source of truth for "which model".
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

from imgpipe.contract import ImageSpec
from imgpipe.registry import publish, store

CHAMPION_FILE = "champion.json"


def champion_record(registry_url: str, model_name: str, auto_migrate: bool,
                    serving_root: str = "") -> Dict[str, Any]:
    """The champion's row as a small JSON-able record ({"model_uid": None} if none).

    Its SavedModel is found under `serving_root` when the recorded path is gone
    (runs/ copied or restored elsewhere)."""
    with store.masked_errors(f"reading the champion from {store.mask_url(registry_url)}"):
        if auto_migrate:
            store.migrate(registry_url)
        row = store.champion(store.require_schema(registry_url), model_name)
    if row is None:
        return {"model_name": model_name, "model_uid": None}
    return {"model_name": model_name, "model_uid": row.model_uid, "version": row.version,
            "artifact_path": publish.artifact_dir(row, serving_root or None),
            "val_accuracy": row.val_accuracy,
            "class_names": row.training_config.get("class_names"),
            ImageSpec.RECORD_KEY: ImageSpec.from_record(row.training_config).to_dict()}


def read(path: str) -> Dict[str, Any]:
    from tfx.dsl.io import fileio
    with fileio.open(path, "r") as handle:
        return json.loads(handle.read())


def champion_uid(record: Optional[Dict[str, Any]]) -> Optional[str]:
    return record.get("model_uid") if record else None
