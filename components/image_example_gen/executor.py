"""TFX executor for ImageExampleGen: thin glue around the Beam transforms.

TFX's FileBasedDriver has already resolved spans and split patterns; this
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
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from imgpipe.components.image_example_gen import ptransforms, report, sources

INGESTION_CONFIG_KEY = "ingestion_config"
REPORT_KEY = "report"
_BEAM_OUTPUT_DIR = "beam_output"
CLASS_NAMES_PROPERTY = "class_names"
IMAGE_SHAPE_PROPERTY = "image_shape"


def _read_json_lines(pattern: str) -> List[dict]:
    rows = []
    for path in sorted(fileio.glob(pattern)):
        with fileio.open(path, "r") as handle:
            rows.extend(json.loads(line) for line in handle.read().splitlines() if line.strip())
    return rows


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads class folders, .npz arrays or TFRecords into tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        raise NotImplementedError("ImageExampleGen plans its transforms in GenerateExamplesByBeam")

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
        plan = self._plan
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                                  output_config)
        split_names = example_gen_utils.generate_output_split_names(input_config, output_config)

        per_input = []
        for split in input_config.splits:
            label = f"[{split.name}]"
            pattern = os.path.join(plan["input_base"], split.pattern)
            if plan["format"] == sources.FOLDERS:
                result = pipeline | f"ReadImages{label}" >> ptransforms.ImageFilesToRecords(
                    pattern, plan["settings"])
            elif plan["format"] == sources.NPZ:
                result = pipeline | f"ReadNpz{label}" >> ptransforms.NpzToRecords(
                    pattern, split.pattern, plan["npz"].count, plan["npz"].has_labels)
            else:
                result = pipeline | f"ReadTFRecords{label}" >> ptransforms.TFRecordsToRecords(
                    pattern, plan["settings"])
            per_input.append(result)

        if output_config.split_config.splits:
            bounds, total = [], 0
            for split in output_config.split_config.splits:
                total += split.hash_buckets
                bounds.append(total)
            splits = (per_input[0][ptransforms.RECORDS]
                      | "SplitByHash" >> beam.Partition(
                          lambda record, n: ptransforms.split_index(record[0], bounds),
                          len(bounds)))
        else:
            splits = [result[ptransforms.RECORDS] for result in per_input]

        beam_dir = os.path.join(plan["report_uri"], _BEAM_OUTPUT_DIR)
        counts = []
        outputs = {}
        for name, records in zip(split_names, splits):
            counts.append(records
                          | f"Label[{name}]" >> beam.Map(lambda record: record[1])
                          | f"CountLabels[{name}]" >> beam.combiners.Count.PerElement()
                          | f"CountRow[{name}]" >> beam.Map(
                              lambda kv, split=name: json.dumps(
                                  {"split": split, "label": kv[0], "count": kv[1]})))
            outputs[name] = records | f"Serialized[{name}]" >> beam.Map(lambda record: record[2])

        def write(pcolls, name):
            return (pcolls
                    | f"Flatten{name}" >> beam.Flatten()
                    | f"Write{name}" >> beam.io.WriteToText(
                        os.path.join(beam_dir, name), file_name_suffix=".jsonl",
                        shard_name_template=""))

        write(counts, "Counts")
        write([r[ptransforms.QUARANTINE] | f"Quarantine{i}" >> beam.Map(json.dumps)
               for i, r in enumerate(per_input)], "Quarantine")
        conversions = ([r[ptransforms.EVENTS] for r in per_input]
                       | "FlattenEvents" >> beam.Flatten()
                       | "CountEvents" >> beam.combiners.Count.PerElement()
                       | "EventRow" >> beam.Map(
                           lambda kv: json.dumps({"name": kv[0], "count": kv[1]})))
        write([conversions], "Conversions")
        return outputs

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        config = json.loads(exec_properties[INGESTION_CONFIG_KEY])
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        report_artifact = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                                  input_config)

        span = exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) or 0
        if config.get("span_override") is not None:
            # A fixed path ingested as an explicit data drop (`--span N`).
            span = int(config["span_override"])
            exec_properties[example_gen_utils.SPAN_PROPERTY_NAME] = span
            examples.span = span

        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        image_shape = [config["height"], config["width"], config["channels"]]
        plan: Dict[str, Any] = {"format": config["format"], "input_base": input_base,
                                "report_uri": report_artifact.uri}
        prelisted: List[dict] = []
        class_names: List[str] = list(config.get("classes") or [])
        unknown: List[str] = []
        try:
            if config["format"] == sources.FOLDERS:
                roots = [sources.class_root_for(input_base, s.pattern) for s in input_config.splits]
                folders = sources.scan_class_folders(roots, class_names)
                class_names, unknown = folders.class_names, folders.unknown
                prelisted += [{"path": p, "reason": "class folder holds no files",
                               "kind": report.EMPTY_CLASS} for p in folders.empty]
                prelisted += [{"path": p, "reason": "not inside a class folder", "kind": report.IGNORED}
                              for p in folders.ignored]
                prelisted += [{"path": p, "reason": reason, "kind": kind}
                              for p, reason, kind in folders.skipped]
            elif config["format"] == sources.NPZ:
                path = os.path.join(input_base, input_config.splits[0].pattern)
                plan["npz"] = layout = sources.inspect_npz(path)
                image_shape = list(layout.image_shape)
                if not class_names:
                    class_names = layout.class_names or []
        except sources.SourceError as error:
            raise report.IngestionFailed(f"ingestion failed: {error}") from None
        plan["settings"] = ptransforms.IngestSettings(
            height=config["height"], width=config["width"], channels=config["channels"],
            class_ids={name: index for index, name in enumerate(class_names)},
            max_image_pixels=config["max_image_pixels"], input_base=input_base)
        self._plan = plan

        super().Do(input_dict, output_dict, exec_properties)

        beam_dir = os.path.join(report_artifact.uri, _BEAM_OUTPUT_DIR)
        split_counts: Dict[str, Dict[int, int]] = {}
        for row in _read_json_lines(os.path.join(beam_dir, "Counts*.jsonl")):
            split_counts.setdefault(row["split"], {})[int(row["label"])] = int(row["count"])
        for name in artifact_utils.decode_split_names(examples.split_names):
            split_counts.setdefault(name, {})
        if config["format"] != sources.FOLDERS and not class_names:
            labels = {label for counts in split_counts.values() for label in counts if label >= 0}
            class_names = [str(i) for i in range(max(labels) + 1)] if labels else []
        conversions = {row["name"]: int(row["count"])
                       for row in _read_json_lines(os.path.join(beam_dir, "Conversions*.jsonl"))}
        result = report.build_report(
            source=config["source"], source_format=config["format"], span=int(span),
            image_shape=image_shape, class_names=class_names, unknown_classes=unknown,
            split_label_counts=split_counts,
            quarantine=prelisted + _read_json_lines(os.path.join(beam_dir, "Quarantine*.jsonl")),
            conversions=conversions, max_bad_fraction=config["max_bad_fraction"])
        fileio.rmtree(beam_dir)
        paths = report.write_report(result, report_artifact.uri, writer=_write_text)

        examples.set_string_custom_property(CLASS_NAMES_PROPERTY, json.dumps(class_names))
        examples.set_string_custom_property(IMAGE_SHAPE_PROPERTY, json.dumps(image_shape))
        report_artifact.set_string_custom_property("status", result["status"])
        if result["errors"]:
            # Nothing half-written: the examples of a refused source are removed.
            for name in artifact_utils.decode_split_names(examples.split_names):
                split_uri = artifact_utils.get_split_uri([examples], name)
                if fileio.exists(split_uri):
                    fileio.rmtree(split_uri)
            raise report.IngestionFailed(
                "ingestion failed: " + "; ".join(result["errors"])
                + f". Quarantine list: {paths['quarantine']}; report: {paths['text']}")


def _write_text(path: str, text: str) -> None:
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "w") as handle:
        handle.write(text)
