"""TFX executor of ValidationGate: validate every split, explain, halt on errors."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from imgpipe.components import failed_outputs
from imgpipe.components.validation_gate import baselines, checks, look, schema_curation
from imgpipe.components.validation_gate.settings import ValidationSettings
from imgpipe.contract import ARTIFACTS

STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
EXAMPLES_KEY = "examples"
REPORT_KEY = "report"
REPORT_JSON, REPORT_TEXT = checks.REPORT_JSON, checks.REPORT_TEXT
STATISTICS_HTML = "statistics.html"
DRIFT_SPLIT = "train"
PREVIOUS_SPAN_HTML = "statistics_vs_previous_span.html"


class ValidationFailed(RuntimeError):
    """The data failed validation; the message is the readable report."""


def _write(path: str, text: str) -> None:
    with fileio.open(path, "w") as handle:
        handle.write(text)


def _judge_splits(statistics: types.Artifact, schema, previous):
    """Per split: its statistics file, statistics, the drift baseline's and the verdict."""
    import tensorflow_data_validation as tfdv
    split_files, verdicts, current_stats, baseline_stats = {}, [], {}, {}
    for split in artifact_utils.decode_split_names(statistics.split_names):
        path = os.path.join(artifact_utils.get_split_uri([statistics], split), baselines.STATS_FILE)
        split_files[split] = path
        current_stats[split] = tfdv.load_stats_binary(path)
        baseline = None
        # Drift is measured on the training split only: it is the largest,
        # and a small eval split's label mix varies by chance alone.
        if previous and split == DRIFT_SPLIT:
            baseline_path = os.path.join(previous[1], f"Split-{split}", baselines.STATS_FILE)
            if fileio.exists(baseline_path):
                baseline = baseline_stats[split] = tfdv.load_stats_binary(baseline_path)
        anomalies = tfdv.validate_statistics(current_stats[split], schema,
                                             environment=schema_curation.TRAINING,
                                             previous_statistics=baseline)
        verdicts.append(checks.judge(anomalies, current_stats[split], schema,
                                     schema_curation.TRAINING, split=split))
    return split_files, verdicts, current_stats, baseline_stats


def _write_views(report_uri: str, current_stats, baseline_stats, span: int, previous) -> None:
    """TFDV's HTML views: the splits side by side, and this span against the previous one."""
    from tensorflow_data_validation.utils import display_util
    splits = list(current_stats)
    html = display_util.get_statistics_html(
        current_stats[splits[0]],
        current_stats[splits[1]] if len(splits) > 1 else None,
        lhs_name=splits[0], rhs_name=splits[1] if len(splits) > 1 else "None")
    _write(os.path.join(report_uri, STATISTICS_HTML), html)
    if DRIFT_SPLIT in baseline_stats:
        _write(os.path.join(report_uri, PREVIOUS_SPAN_HTML), display_util.get_statistics_html(
            current_stats[DRIFT_SPLIT], baseline_stats[DRIFT_SPLIT],
            lhs_name=f"span {span}", rhs_name=f"span {previous[0]}"))


def _look(report_uri: str, examples: types.Artifact, current_stats, schema,
          settings: ValidationSettings, data_names: List[str]) -> dict:
    """The pictures of the data (PNG, in the report folder) and the class warnings."""
    if settings.image is None:
        return {"pictures": {}, "warnings": []}
    split_dirs = {split: artifact_utils.get_split_uri([examples], split) for split in current_stats}
    class_names = data_names or schema_curation.expectations(schema).class_names
    with tempfile.TemporaryDirectory() as local:   # matplotlib writes local files; URIs may be gs://
        found = look.write_look(local, split_dirs, current_stats, settings.image, class_names,
                                schema_curation.is_encoded(schema))
        for name, path in found["pictures"].items():
            target = os.path.join(report_uri, os.path.basename(path))
            fileio.copy(path, target, overwrite=True)
            found["pictures"][name] = os.path.basename(path)
    return found


def _look_lines(found: dict) -> str:
    """The warnings, for the report text (the pictures sit beside it, listed in the JSON)."""
    lines = [f"  WARNING (not blocking): {warning}" for warning in found["warnings"]]
    return "\nA look at the data:\n" + "\n".join(lines) if lines else ""


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        import tensorflow_data_validation as tfdv
        settings = ValidationSettings.from_exec_properties(exec_properties)
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        schema_artifact = artifact_utils.get_single_instance(input_dict[SCHEMA_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])

        schema = tfdv.load_schema_text(os.path.join(schema_artifact.uri, ARTIFACTS.schema))
        schema_curation.apply_thresholds(schema, settings.thresholds)
        span = int(examples.get_int_custom_property("span") or 0)
        previous = baselines.previous_span(settings.baseline_root, span)
        split_files, verdicts, current_stats, baseline_stats = _judge_splits(
            statistics, schema, previous)

        data_names = json.loads(examples.get_string_custom_property("class_names") or "[]")
        mismatch = checks.class_names_mismatch(
            data_names, schema_curation.expectations(schema).class_names)
        if mismatch:
            for verdict in verdicts:
                verdict.findings.append(mismatch)
        passed = all(v.passed for v in verdicts)
        against = f"span {previous[0]}" if previous else "no earlier span (first validated span)"
        header = (f"Validation of span {span} against the curated schema; drift baseline: {against}: "
                  f"{'PASSED' if passed else 'FAILED'}")
        try:
            found = _look(report.uri, examples, current_stats, schema, settings, data_names)
        except Exception as error:  # the pictures must never hide the verdict
            found = {"pictures": {}, "warnings": [
                f"the look at the data was not drawn ({type(error).__name__}: {error})"]}
        text = checks.format_verdicts(verdicts, header) + _look_lines(found)
        _write(os.path.join(report.uri, REPORT_TEXT), text + "\n")
        _write(os.path.join(report.uri, REPORT_JSON), checks.verdicts_json(
            verdicts, span=span, baseline_span=previous[0] if previous else None,
            look=found) + "\n")
        _write_views(report.uri, current_stats, baseline_stats, span, previous)

        report.set_string_custom_property("status", "passed" if passed else "failed")
        if not passed:
            kept = failed_outputs.preserve(report.uri)
            raise ValidationFailed(
                f"{text}\nThe pipeline stopped before training. Report and statistics views: {kept}")
        if settings.baseline_root:
            baselines.record(settings.baseline_root, span, split_files)
