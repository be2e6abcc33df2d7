"""ChampionResolver: reads the current champion from the model registry.

Its input is the candidate model, so it runs again whenever a new model is
trained (and is cached with it otherwise): the candidate is always compared
with the champion of the moment it was trained. Not TFX's Resolver, so the
same pipeline runs on open-source Kubeflow Pipelines.
"""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from imgpipe.components.champion_resolver import executor
from imgpipe.components.champion_resolver.settings import ResolverSettings
from imgpipe.components.settings import settings_parameter


class Champion(types.Artifact):
    """champion.json: the champion's uid, version, serving path and accuracy (or none)."""
    # <namespace>.<Title>, as the KFP compiler requires; imgpipe re-exports it (imgpipe/__init__.py).
    TYPE_NAME = "imgpipe.Champion"


class ChampionResolverSpec(ComponentSpec):
    PARAMETERS = settings_parameter()
    INPUTS = {executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {executor.CHAMPION_KEY: ChannelParameter(type=Champion)}


class ChampionResolver(base_component.BaseComponent):
    SPEC_CLASS = ChampionResolverSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, settings: ResolverSettings):
        super().__init__(spec=ChampionResolverSpec(
            model=model, settings=settings.to_json(), champion=types.Channel(type=Champion)))
