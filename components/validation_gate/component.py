"""ValidationGate: TFDV validation against the curated schema that halts the run.

TFX's ExampleValidator writes anomalies and halts nothing; this component
fails its execution on any ERROR, so nothing downstream (Transform, Trainer,
Pusher) runs on data that would reproduce a training/serving skew.
"""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from imgpipe.components.validation_gate import executor
from imgpipe.components.validation_gate.schema_curation import DriftThresholds


class ValidationReport(types.Artifact):
    """validation_report.json/.txt and statistics HTML views of one validation."""
    TYPE_NAME = "imgpipe.ValidationReport"  # <namespace>.<Title> (KFP compiler); imgpipe re-exports it (imgpipe/__init__.py)


class ValidationGateSpec(ComponentSpec):
    PARAMETERS = {
        executor.THRESHOLDS_KEY: ExecutionParameter(type=str),
        executor.BASELINE_ROOT_KEY: ExecutionParameter(type=str),
    }
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
                 examples: types.BaseChannel, thresholds: DriftThresholds, baseline_root: str):
        super().__init__(spec=ValidationGateSpec(
            statistics=statistics, schema=schema, examples=examples,
            drift_thresholds=json.dumps(thresholds.__dict__, sort_keys=True),
            baseline_root=baseline_root,
            report=types.Channel(type=ValidationReport)))
