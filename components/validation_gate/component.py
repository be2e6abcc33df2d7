"""ValidationGate: TFDV validation against the curated schema that halts the run.

TFX's ExampleValidator writes anomalies and halts nothing; this component
fails its execution on any ERROR, so nothing downstream (Transform, Trainer,
Pusher) runs on data that would reproduce a training/serving skew.
"""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from imgpipe.components.settings import settings_parameter
from imgpipe.components.validation_gate import executor
from imgpipe.components.validation_gate.settings import ValidationSettings


class ValidationReport(types.Artifact):
    """validation_report.json/.txt and statistics HTML views of one validation."""
    # <namespace>.<Title>, as the KFP compiler requires; imgpipe re-exports it (imgpipe/__init__.py).
    TYPE_NAME = "imgpipe.ValidationReport"


class ValidationGateSpec(ComponentSpec):
    PARAMETERS = settings_parameter()
    INPUTS = {
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {
        executor.REPORT_KEY: ChannelParameter(type=ValidationReport),
    }


class ValidationGate(base_component.BaseComponent):
    SPEC_CLASS = ValidationGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, statistics: types.BaseChannel, schema: types.BaseChannel,
                 examples: types.BaseChannel, settings: ValidationSettings):
        super().__init__(spec=ValidationGateSpec(
            statistics=statistics, schema=schema, examples=examples,
            settings=settings.to_json(),
            report=types.Channel(type=ValidationReport)))
