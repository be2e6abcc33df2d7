"""EvaluationGate: blesses a model only if every floor is met AND it serves as evaluated.

After TFX's Evaluator (TFMA) has measured the model on the evaluation split,
this component applies the per-class F1 floors (TFMA's thresholds cannot
address argmax-based per-class F1), runs the serving-parity check and writes
the blessing the Pusher reads (TFX's ModelBlessing: `blessed` = 1 or 0) and
the evaluation report. With the registry's champion (ChampionResolver) it
also scores the champion on the same inputs: no regression beyond
`max_accuracy_drop`. It never raises on a bad model: a NOT_BLESSED model is
a result, recorded in ML Metadata; `imgpipe run` exits non-zero on it.
"""
from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from imgpipe.components.champion_resolver.component import Champion
from imgpipe.components.evaluation_gate import executor
from imgpipe.components.evaluation_gate.settings import EvaluationSettings
from imgpipe.components.settings import settings_parameter


class EvaluationReport(types.Artifact):
    """evaluation_report.txt/.json, confusion_matrix.png, per_class_f1.png."""
    # <namespace>.<Title>, as the KFP compiler requires; imgpipe re-exports it (imgpipe/__init__.py).
    TYPE_NAME = "imgpipe.EvaluationReport"


class EvaluationGateSpec(ComponentSpec):
    PARAMETERS = settings_parameter()
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        # From ChampionResolver; absent: no no-regression check.
        executor.CHAMPION_KEY: ChannelParameter(type=Champion, optional=True),
        # The curated schema and the training statistics: the fuzzer asks whether
        # the monitor's input-skew check would raise each client mistake.
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                  optional=True),
    }
    OUTPUTS = {
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        executor.REPORT_KEY: ChannelParameter(type=EvaluationReport),
    }


class EvaluationGate(base_component.BaseComponent):
    SPEC_CLASS = EvaluationGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 evaluation: types.BaseChannel, settings: EvaluationSettings,
                 champion: Optional[types.BaseChannel] = None,
                 schema: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None):
        super().__init__(spec=EvaluationGateSpec(
            model=model, examples=examples, evaluation=evaluation, champion=champion,
            schema=schema, statistics=statistics,
            settings=settings.to_json(),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            report=types.Channel(type=EvaluationReport)))
