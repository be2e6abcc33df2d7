"""Writes the carried schema text as a Schema artifact (what ImportSchemaGen writes)."""
from __future__ import annotations

import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from imgpipe.components.curated_schema.settings import CuratedSchemaSettings
from imgpipe.contract import ARTIFACTS

SCHEMA_KEY = "schema"


def parse_schema(text: str, origin: str):
    """The schema proto; a text that is not a TFDV schema is an error naming its origin."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as error:
        raise ValueError(f"{origin} is not a TFDV text schema ({error})") from None


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        settings = CuratedSchemaSettings.from_exec_properties(exec_properties)
        parse_schema(settings.schema_text, settings.origin)
        schema = artifact_utils.get_single_instance(output_dict[SCHEMA_KEY])
        fileio.makedirs(schema.uri)
        with fileio.open(os.path.join(schema.uri, ARTIFACTS.schema), "w") as handle:
            handle.write(settings.schema_text)
        schema.set_string_custom_property("origin", settings.origin)
        schema.set_string_custom_property("sha256", settings.sha256)
