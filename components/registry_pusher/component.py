"""RegistryPusher: a blessed model to the serving directory, the registry and MLflow.

Consumes the model, its blessing and evaluation report (and, for MLflow, the
schema and the validation report); an unblessed model is not pushed. The
protocol that keeps the three stores consistent is in imgpipe.registry.publish.
"""
from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from imgpipe.components.champion_resolver.component import Champion
from imgpipe.components.evaluation_gate.component import EvaluationReport
from imgpipe.components.registry_pusher import executor
from imgpipe.components.registry_pusher.settings import PushSettings
from imgpipe.components.settings import settings_parameter
from imgpipe.components.validation_gate.component import ValidationReport


class RegistryPusherSpec(ComponentSpec):
    PARAMETERS = settings_parameter()
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.REPORT_KEY: ChannelParameter(type=EvaluationReport),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
        executor.VALIDATION_REPORT_KEY: ChannelParameter(type=ValidationReport, optional=True),
        executor.CHAMPION_KEY: ChannelParameter(type=Champion, optional=True),
        # The training data's statistics: recorded for `imgpipe monitor`'s skew check.
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                  optional=True),
    }
    OUTPUTS = {executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}


class RegistryPusher(base_component.BaseComponent):
    SPEC_CLASS = RegistryPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, blessing: types.BaseChannel,
                 evaluation_report: types.BaseChannel, settings: PushSettings,
                 schema: Optional[types.BaseChannel] = None,
                 validation_report: Optional[types.BaseChannel] = None,
                 champion: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None):
        super().__init__(spec=RegistryPusherSpec(
            model=model, blessing=blessing, evaluation_report=evaluation_report, schema=schema,
            validation_report=validation_report, champion=champion, statistics=statistics,
            settings=settings.to_json(),
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
