"""TFX executor of EvaluationGate: TFMA's numbers + serving parity -> blessing."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional

import numpy as np
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from imgpipe.components.champion_resolver import resolve
from imgpipe.components.evaluation_gate import decisions, parity, report, tfma_results
from imgpipe.components.evaluation_gate.settings import EvaluationSettings
from imgpipe.components.fuzzer import budget as fuzz_budget
from imgpipe.components.fuzzer import report as fuzz_report
from imgpipe.contract import ImageSpec

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
REPORT_KEY = "report"
CHAMPION_KEY = "champion"
SCHEMA_KEY = "schema"
STATISTICS_KEY = "statistics"
BLESSED_PROPERTY = "blessed"   # TFX's ModelBlessing convention: 1 or 0


def is_blessed(blessing: types.Artifact) -> bool:
    """What the next stage (the Pusher) checks."""
    return bool(blessing.get_int_custom_property(BLESSED_PROPERTY))


def compare_with_champion(record: Optional[dict], settings: EvaluationSettings,
                          inputs: parity.ServingInputs,
                          candidate: decisions.Parity) -> Optional[decisions.ChampionComparison]:
    """The champion scored on the same inputs through the same serving path."""
    if not record or not record.get("model_uid"):
        return None
    problem, accuracy, flips, class_flips = "", None, None, {}
    champion_spec = ImageSpec.from_record(record)
    if record.get("class_names") != settings.class_names:
        problem = (f"it predicts {record.get('class_names')}, this model {settings.class_names}; "
                   "a different label set needs its own registry.model_name")
    elif champion_spec.shape != settings.image.shape:
        problem = (f"it takes images of {champion_spec.describe()}, this model "
                   f"{settings.image.describe()}")
    else:
        try:
            champion_ids = parity.champion_class_ids(record["artifact_path"], inputs)
            accuracy = float((champion_ids == inputs.labels).mean())
            flips, class_flips = decisions.flip_rates(np.asarray(candidate.served_class_ids),
                                                      champion_ids, inputs.labels, settings.class_names)
        except Exception as error:  # noqa: BLE001 - reported as the reason the gate fails
            problem = (f"its SavedModel at {record['artifact_path']} could not be scored "
                       f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
    return decisions.ChampionComparison(
        model_uid=record["model_uid"], version=record["version"], champion_accuracy=accuracy,
        candidate_accuracy=candidate.served_accuracy, max_drop=settings.max_accuracy_drop,
        problem=problem, flip_rate=flips, class_flip_rates=class_flips,
        max_flip_rate=settings.max_flip_rate)


def served_calibration_error(checked: decisions.Parity, inputs: parity.ServingInputs) -> float:
    from imgpipe.components.fuzzer import scoring
    ids = np.asarray(checked.served_class_ids)
    return scoring.calibration_error(np.asarray(checked.served_confidences), ids == inputs.labels)


def monitor_checks(input_dict, settings: EvaluationSettings):
    """The monitor's checks, with the curated schema and training statistics when wired."""
    from imgpipe.components.fuzzer import flags
    uri = {key: artifact_utils.get_single_uri(input_dict[key]) if input_dict.get(key) else None
           for key in (SCHEMA_KEY, STATISTICS_KEY)}
    return flags.monitor_checks(settings.monitor_min_mean_confidence,
                                settings.monitor_pixel_js_threshold, uri[SCHEMA_KEY], uri[STATISTICS_KEY])


def evaluator_seconds(evaluation: types.Artifact, metadata_path: str) -> float:
    """How long the Evaluator's execution that produced `evaluation` ran, as a
    local run's ML Metadata recorded it (registered to completed; a cached
    Evaluator's: the original execution's). 0 without a local store to read
    (a cluster's orchestrator): the budget then counts the gate's own time."""
    if not metadata_path or not evaluation.id or not os.path.exists(metadata_path):
        return 0.0
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(connection)
    producers = [event.execution_id for event in store.get_events_by_artifact_ids([evaluation.id])
                 if event.type == metadata_store_pb2.Event.OUTPUT]
    return max(((e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000
                for e in store.get_executions_by_id(producers)), default=0.0)


def fuzz_candidate(candidate, inputs: parity.ServingInputs, settings: EvaluationSettings,
                   checks=None, checked: Optional[decisions.Parity] = None, budget=None):
    """The candidate (its loaded SavedModel, as exported) fed the evaluation
    inputs through every client mistake. The parity check already sent the
    original inputs to the serving path: its answers are that path's clean reference."""
    from imgpipe.components.fuzzer import fuzz, scoring
    from imgpipe.components.progress import report as progress
    policy = scoring.Policy(settings.fuzz_max_accuracy_drop, settings.fuzz_max_class_recall_drop,
                            dict(settings.fuzz_accepted), settings.fuzz_screen)
    originals, labels = fuzz.originals_of(inputs, settings.image, settings.fuzz_sample)
    answered = None
    if checked is not None and checked.served_probabilities is not None:   # of the same sample
        answered = {"bytes" if inputs.files else "pixels": checked.served_probabilities}
    return fuzz.run(candidate, originals, labels, settings.image, settings.class_names, policy,
                    progress=progress, checks=checks, answered=answered, budget=budget)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        started = time.perf_counter()
        settings = EvaluationSettings.from_exec_properties(exec_properties)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        evaluation = artifact_utils.get_single_instance(input_dict[EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        report_artifact = artifact_utils.get_single_instance(output_dict[REPORT_KEY])

        class_names = settings.class_names
        measured = tfma_results.read(evaluation.uri, len(class_names))
        rows = decisions.class_rows(class_names, measured.confusion, measured.f1,
                                    measured.precision, measured.recall, settings.f1_floors)
        split_dir = artifact_utils.get_split_uri([examples], settings.split)
        inputs = parity.load_inputs(split_dir, examples.get_string_custom_property("input_base"),
                                    settings.image.shape)
        import tensorflow as tf

        from imgpipe.components.fuzzer import fuzz
        candidate = tf.saved_model.load(path_utils.serving_model_path(model.uri))   # loaded once
        # The parity check keeps its answers for the fuzzer's sample: its clean reference.
        sample = (fuzz.sample_indices(len(inputs.labels), settings.fuzz_sample)
                  if settings.fuzz_enabled else None)
        parity_started = time.perf_counter()
        checked = parity.check(candidate, inputs, measured.accuracy, keep=sample)
        parity_seconds = time.perf_counter() - parity_started
        champion_record = None
        if input_dict.get(CHAMPION_KEY):
            champion_artifact = artifact_utils.get_single_instance(input_dict[CHAMPION_KEY])
            champion_record = resolve.read(os.path.join(champion_artifact.uri, resolve.CHAMPION_FILE))
        comparison = compare_with_champion(champion_record, settings, inputs, checked)
        fuzz_started = time.perf_counter()
        # The fuzzer's share of the evaluation: the Evaluator's and this gate's so far.
        budget = fuzz_budget.budget_for(
            settings.fuzz_max_evaluation_share,
            evaluator_seconds(evaluation, settings.metadata_path) + fuzz_started - started,
            parity_seconds, len(inputs.labels), started=fuzz_started)
        fuzz_rows = (fuzz_candidate(candidate, inputs, settings, monitor_checks(input_dict, settings),
                                    checked, budget) if settings.fuzz_enabled else [])
        fuzz_seconds = time.perf_counter() - fuzz_started
        decision = decisions.decide(measured.accuracy, settings.accuracy_floor, rows, checked,
                                    settings.max_accuracy_gap, settings.max_disagreement,
                                    comparison, fuzz_report.failures(fuzz_rows),
                                    (served_calibration_error(checked, inputs),
                                     settings.max_calibration_error))
        if settings.fuzz_enabled:
            decision.fuzz = [row.as_dict() for row in fuzz_rows]
            decision.fuzz_table = fuzz_report.format_table(fuzz_rows, budget, fuzz_seconds)
            decision.fuzz_seconds = round(fuzz_seconds, 2)
            decision.fuzz_budget = budget.summary() if budget else None
            fuzz_report.chart(fuzz_rows, os.path.join(report_artifact.uri, fuzz_report.FUZZ_PNG))
        baseline = decisions.serving_baseline(checked.served_class_ids, checked.served_confidences,
                                              class_names)
        report.write(report_artifact.uri, decision, measured.confusion, class_names, baseline)

        blessing.set_int_custom_property(BLESSED_PROPERTY, int(decision.blessed))
        blessing.set_string_custom_property("current_model", model.uri)
        blessing.set_string_custom_property("failures", json.dumps(decision.failures))
        blessing.set_string_custom_property("compared_champion",
                                            resolve.champion_uid(champion_record) or "")
        marker = "BLESSED" if decision.blessed else "NOT_BLESSED"
        with fileio.open(os.path.join(blessing.uri, marker), "w") as handle:
            handle.write("\n".join(decision.failures) + "\n")
        report_artifact.set_int_custom_property(BLESSED_PROPERTY, int(decision.blessed))
