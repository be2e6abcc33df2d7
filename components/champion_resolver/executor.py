"""TFX executor of ChampionResolver: writes champion.json from the registry."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from imgpipe.components.champion_resolver import resolve
from imgpipe.components.champion_resolver.settings import ResolverSettings
from imgpipe.registry import store

MODEL_KEY = "model"
CHAMPION_KEY = "champion"


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        settings = ResolverSettings.from_exec_properties(exec_properties)
        url = store.resolve_url(settings.registry_url)
        record = resolve.champion_record(url, settings.model_name, settings.auto_migrate,
                                         settings.serving_root)
        champion = artifact_utils.get_single_instance(output_dict[CHAMPION_KEY])
        fileio.makedirs(champion.uri)
        with fileio.open(os.path.join(champion.uri, resolve.CHAMPION_FILE), "w") as handle:
            handle.write(json.dumps(record, indent=2) + "\n")
        champion.set_string_custom_property("model_uid", record["model_uid"] or "")
        print(f"champion of {record['model_name']} in {store.mask_url(url)}: "
              f"{record['model_uid'] or 'none yet'}")
