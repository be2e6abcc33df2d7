"""CuratedSchema: TFX's ImportSchemaGen, with the schema's text as its parameter.

ImportSchemaGen takes a path, which has two costs: a pipeline compiled for
Kubeflow names a file the pods do not have (the schema of a user's project
is not in imgpipe's image), and its cache key is the path, so a schema
edited in place is not picked up by a cached local run. Carrying the text
makes the compiled pipeline self-contained and keys the cache on content.
"""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from imgpipe.components.curated_schema import executor
from imgpipe.components.curated_schema.settings import CuratedSchemaSettings
from imgpipe.components.settings import settings_parameter


class CuratedSchemaSpec(ComponentSpec):
    PARAMETERS = settings_parameter()
    INPUTS = {}
    OUTPUTS = {executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema)}


class CuratedSchema(base_component.BaseComponent):
    SPEC_CLASS = CuratedSchemaSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, settings: CuratedSchemaSettings):
        super().__init__(spec=CuratedSchemaSpec(
            settings=settings.to_json(), schema=types.Channel(type=standard_artifacts.Schema)))
