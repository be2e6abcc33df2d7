"""TFX executor for ImageExampleGen: thin glue around the Beam transforms.

TFX's FileBasedDriver has resolved spans and split patterns (where no driver
ran, as on open-source Kubeflow, the executor does that first); this
executor plans the Beam job per source kind, lets TFX's base executor write
the splits, then turns what the job counted into the ingestion report and
refuses the data when too much of it was bad.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import apache_beam as beam
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from imgpipe.components import failed_outputs, progress
from imgpipe.components.image_example_gen import driver, ptransforms, report, sources
from imgpipe.components.image_example_gen.settings import IngestionSettings

REPORT_KEY = "report"
_BEAM_OUTPUT_DIR = "beam_output"
CLASS_NAMES_PROPERTY = "class_names"
# The stored pixels' [h, w, c]: the spec's for image files, an array source's own.
STORED_SHAPE_PROPERTY = "image_shape"
INPUT_BASE_PROPERTY = "input_base"


def _read_json_lines(pattern: str) -> List[dict]:
    rows = []
    for path in sorted(fileio.glob(pattern)):
        with fileio.open(path, "r") as handle:
            rows.extend(json.loads(line) for line in handle.read().splitlines() if line.strip())
    return rows


def _read_split(pipeline: beam.Pipeline, plan: Dict[str, Any], split) -> beam.pvalue.PCollection:
    """One input pattern through the reader of its source kind (tagged result)."""
    label = f"[{split.name}]"
    pattern = os.path.join(plan["input_base"], split.pattern)
    if plan["format"] == sources.FOLDERS:
        return pipeline | f"ReadImages{label}" >> ptransforms.ImageFilesToRecords(
            pattern, plan["settings"])
    if plan["format"] == sources.NPZ:
        return pipeline | f"ReadNpz{label}" >> ptransforms.NpzToRecords(
            pattern, split.pattern, plan["npz"].count, plan["npz"].has_labels)
    return pipeline | f"ReadTFRecords{label}" >> ptransforms.TFRecordsToRecords(
        pattern, plan["settings"])


def _assign_splits(per_input, routes: Dict[str, Dict[str, int]], split_names: List[str]):
    """Records per output split and their counts: each input's records go to
    the output splits of its route, by hash of the source id when several."""
    by_split: Dict[str, List[beam.PCollection]] = {name: [] for name in split_names}
    counts = []
    for (input_name, targets), result in zip(routes.items(), per_input):
        names, bounds, total = list(targets), [], 0
        for buckets in targets.values():
            total += buckets
            bounds.append(total)
        assigned = (result[ptransforms.RECORDS]
                    | f"AssignSplits[{input_name}]" >> beam.ParDo(ptransforms.AssignSplits(
                        names, bounds if len(names) > 1 else None)
                    ).with_outputs(ptransforms.COUNTS, *names))
        for name in names:
            by_split[name].append(assigned[name])
        counts.append(assigned[ptransforms.COUNTS])
    return by_split, counts


def split_routes(config: IngestionSettings, input_config: example_gen_pb2.Input,
                 output_config: example_gen_pb2.Output) -> Dict[str, Dict[str, int]]:
    """Input split -> {output split: hash buckets}: the settings' routes (split
    folders), else TFX's configs (one input hashed into the output splits)."""
    if config.split_routes:
        return dict(config.split_routes)
    if output_config.split_config.splits:
        return {input_config.splits[0].name: {split.name: split.hash_buckets
                                              for split in output_config.split_config.splits}}
    return {split.name: {split.name: 1} for split in input_config.splits}


def _write_tallies(per_input, counts, beam_dir: str) -> None:
    """Counts per split and label, conversions and quarantine rows, as JSON lines for the report."""
    def write_rows(pcoll, name):
        return pcoll | f"Write{name}" >> beam.io.WriteToText(
            os.path.join(beam_dir, name), file_name_suffix=".jsonl", shard_name_template="")

    def merged(pcolls, name):
        return (pcolls
                | f"Flatten{name}" >> beam.Flatten()
                | f"Merge{name}" >> beam.CombineGlobally(ptransforms.merge_counts))

    write_rows(merged(counts, "Counts")
               | "CountRows" >> beam.FlatMap(lambda counts: [
                   json.dumps({"split": split, "label": label, "count": count})
                   for (split, label), count in sorted(counts.items())]), "Counts")
    write_rows(merged([r[ptransforms.EVENTS] for r in per_input], "Conversions")
               | "ConversionRows" >> beam.FlatMap(lambda counts: [
                   json.dumps({"name": name, "count": count})
                   for name, count in sorted(counts.items())]), "Conversions")
    write_rows([r[ptransforms.QUARANTINE] for r in per_input]
               | "FlattenQuarantine" >> beam.Flatten()
               | "QuarantineRows" >> beam.Map(json.dumps), "Quarantine")


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads class folders, .npz arrays or TFRecords into tf.Examples.

    Writes the splits itself, in TFX's layout (`Split-<name>/data_tfrecord-*.gz`),
    without the example-level reshuffle of TFX's WriteSplit: file order is
    shuffled before decoding instead, so a DirectRunner never holds the
    decoded dataset in memory.
    """

    def _build(self, pipeline: beam.Pipeline, plan: Dict[str, Any],
               input_config: example_gen_pb2.Input, routes: Dict[str, Dict[str, int]],
               split_uris: Dict[str, str]) -> None:
        inputs = {split.name: split for split in input_config.splits}
        per_input = [_read_split(pipeline, plan, inputs[name]) for name in routes]
        by_split, counts = _assign_splits(per_input, routes, list(split_uris))
        beam_dir = os.path.join(plan["report_uri"], _BEAM_OUTPUT_DIR)
        for name, uri in split_uris.items():
            (by_split[name]
             | f"Flatten[{name}]" >> beam.Flatten()
             | f"Write[{name}]" >> ptransforms.WriteExamples(
                 uri, os.path.join(beam_dir, f"tmp-{name}"), write_split.DEFAULT_TF_RECORD_FILE_NAME,
                 level=(ptransforms.ENCODED_LEVEL if plan["format"] == sources.FOLDERS
                        else ptransforms.PIXELS_LEVEL)))
        _write_tallies(per_input, counts, beam_dir)

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        config = IngestionSettings.from_exec_properties(exec_properties)
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        report_artifact = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        span = _resolve_span(exec_properties, examples, config)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        plan = _plan(config, input_base, input_config, report_artifact.uri)
        progress.report(f"ImageExampleGen: reading {input_base} ({config.format}, span {span})")

        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        routes = split_routes(config, input_config, output_config)
        split_names = sources.output_splits(routes)
        examples.split_names = artifact_utils.encode_split_names(split_names)
        split_uris = {name: artifact_utils.get_split_uri([examples], name) for name in split_names}
        with self._make_beam_pipeline() as pipeline:
            self._build(pipeline, plan, input_config, routes, split_uris)
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))

        result = _report_job(config, plan, examples, int(span), input_base, report_artifact.uri)
        examples.set_string_custom_property(CLASS_NAMES_PROPERTY, json.dumps(result["class_names"]))
        examples.set_string_custom_property(STORED_SHAPE_PROPERTY, json.dumps(plan["image_shape"]))
        # source_id is relative to this: later stages find the original files.
        examples.set_string_custom_property(INPUT_BASE_PROPERTY, input_base)
        report_artifact.set_string_custom_property("status", result["status"])
        if result["errors"]:
            _refuse(examples, report_artifact.uri, result)


def _resolve_span(exec_properties: Dict[str, Any], examples: types.Artifact,
                  config: IngestionSettings) -> int:
    """The span ingested: the driver's (run here where no driver ran) or `--span N`."""
    try:
        # No-op after TFX's driver (local runs); on open-source KFP it never ran.
        driver.resolve_without_driver(exec_properties, examples)
    except (ValueError, RuntimeError) as error:   # no file matches a span pattern, ...
        raise report.IngestionFailed(
            f"ingestion failed: {exec_properties[standard_component_specs.INPUT_BASE_KEY]}: "
            f"{error}") from None
    span = exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) or 0
    if config.span_override is not None:
        # A fixed path ingested as an explicit data drop (`--span N`).
        span = int(config.span_override)
        exec_properties[example_gen_utils.SPAN_PROPERTY_NAME] = span
        # TFX's driver records the span as a custom property; keep both in step.
        examples.span = span
        examples.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, span)
    return span


def _plan(config: IngestionSettings, input_base: str, input_config: example_gen_pb2.Input,
          report_uri: str) -> Dict[str, Any]:
    """What the Beam job reads and how: format, settings, class names, pre-listed quarantine."""
    plan: Dict[str, Any] = {"format": config.format, "input_base": input_base,
                            "report_uri": report_uri, "image_shape": list(config.image.shape),
                            "prelisted": [], "class_names": list(config.classes), "unknown": []}
    try:
        if config.format == sources.FOLDERS:
            roots = [sources.class_root_for(input_base, s.pattern) for s in input_config.splits]
            folders = sources.scan_class_folders(roots, plan["class_names"])
            plan["class_names"], plan["unknown"] = folders.class_names, folders.unknown
            plan["prelisted"] = (
                [{"path": p, "reason": "class folder holds no files", "kind": report.EMPTY_CLASS}
                 for p in folders.empty]
                + [{"path": p, "reason": "not inside a class folder", "kind": report.IGNORED}
                   for p in folders.ignored]
                + [{"path": p, "reason": reason, "kind": kind} for p, reason, kind in folders.skipped])
        elif config.format == sources.NPZ:
            path = os.path.join(input_base, input_config.splits[0].pattern)
            plan["npz"] = layout = sources.inspect_npz(path)
            plan["image_shape"] = list(layout.image_shape)
            plan["class_names"] = plan["class_names"] or layout.class_names or []
    except sources.SourceError as error:
        raise report.IngestionFailed(f"ingestion failed: {error}") from None
    plan["settings"] = ptransforms.IngestSettings(
        image=config.image, max_image_pixels=config.max_image_pixels, input_base=input_base,
        class_ids={name: index for index, name in enumerate(plan["class_names"])})
    return plan


def _report_job(config: IngestionSettings, plan: Dict[str, Any], examples: types.Artifact,
                span: int, input_base: str, report_uri: str) -> dict:
    """The ingestion report from what the Beam job counted; written beside the examples."""
    beam_dir = os.path.join(report_uri, _BEAM_OUTPUT_DIR)
    split_counts: Dict[str, Dict[int, int]] = {}
    for row in _read_json_lines(os.path.join(beam_dir, "Counts*.jsonl")):
        split_counts.setdefault(row["split"], {})[int(row["label"])] = int(row["count"])
    for name in artifact_utils.decode_split_names(examples.split_names):
        split_counts.setdefault(name, {})
    class_names = plan["class_names"]
    if config.format != sources.FOLDERS and not class_names:
        labels = {label for counts in split_counts.values() for label in counts if label >= 0}
        class_names = [str(i) for i in range(max(labels) + 1)] if labels else []
    conversions = {row["name"]: int(row["count"])
                   for row in _read_json_lines(os.path.join(beam_dir, "Conversions*.jsonl"))}
    result = report.build_report(
        source=sources.source_as_read(config.source, config.compiled_input_base, input_base),
        source_format=config.format, span=span,
        image_shape=plan["image_shape"], class_names=class_names, unknown_classes=plan["unknown"],
        split_label_counts=split_counts,
        quarantine=plan["prelisted"] + _read_json_lines(os.path.join(beam_dir, "Quarantine*.jsonl")),
        conversions=conversions, max_bad_fraction=config.max_bad_fraction)
    fileio.rmtree(beam_dir)
    report.write_report(result, report_uri, writer=_write_text)
    return {**result, "class_names": class_names}


def _refuse(examples: types.Artifact, report_uri: str, result: dict) -> None:
    """Nothing half-written: the examples of a refused source are removed, the report kept."""
    for name in artifact_utils.decode_split_names(examples.split_names):
        split_uri = artifact_utils.get_split_uri([examples], name)
        if fileio.exists(split_uri):
            fileio.rmtree(split_uri)
    kept = failed_outputs.preserve(report_uri)
    raise report.IngestionFailed(
        "ingestion failed: " + "; ".join(result["errors"])
        + f". Quarantine list: {os.path.join(kept, report.QUARANTINE_CSV)}; "
        f"report: {os.path.join(kept, report.REPORT_TEXT)}")


def _write_text(path: str, text: str) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "w") as handle:
        handle.write(text)
