"""Validation verdicts a tired engineer understands at 3 a.m.; pure functions.

TFDV finds the anomalies (types, domains, shapes, presence, drift); this
module adds the one trap TFDV cannot see (integer pixels already scaled to
{0, 1}) and turns each anomaly into one line that names the feature, the
expectation, what arrived and the likely cause, using the statistics.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from imgpipe.components.validation_gate import schema_curation
from imgpipe.contract import FEATURES

# The gate's report files (the executor writes them; the run page links them).
REPORT_JSON = "validation_report.json"
REPORT_TEXT = "validation_report.txt"

ERROR = "ERROR"
WARNING = "WARNING"


@dataclasses.dataclass
class Finding:
    feature: str
    severity: str
    message: str
    kind: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Verdict:
    findings: List[Finding]
    examples: int
    drift: Dict[str, dict]          # feature -> {"measure", "value", "threshold"}
    split: str = ""

    @property
    def passed(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def as_dict(self) -> dict:
        return {"split": self.split, "passed": self.passed, "examples": self.examples,
                "findings": [f.as_dict() for f in self.findings], "drift": self.drift}


def _feature_stats(dataset: statistics_pb2.DatasetFeatureStatistics,
                   name: str) -> Optional[statistics_pb2.FeatureNameStatistics]:
    for feature in dataset.features:
        if (feature.path.step and feature.path.step[0] == name) or feature.name == name:
            return feature
    return None


def _common(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind else statistics_pb2.CommonStatistics()


def _range(feature) -> Optional[tuple]:
    if feature is not None and feature.WhichOneof("stats") == "num_stats":
        return feature.num_stats.min, feature.num_stats.max
    return None


def _values(feature) -> List[str]:
    if feature is None or feature.WhichOneof("stats") != "string_stats":
        return []
    values = [v.value for v in feature.string_stats.top_values]
    values += [b.label for b in feature.string_stats.rank_histogram.buckets]
    return sorted(set(values))


def _fmt(value: float) -> str:
    return f"{value:g}"


def _pixel_dtypes(dataset) -> str:
    values = _values(_feature_stats(dataset, FEATURES.pixel_dtype))
    return ", ".join(values) if values else "unknown"


def _explain_image(anomaly_kinds: List[str], dataset, expected: schema_curation.SchemaExpectations
                   ) -> List[str]:
    image = _feature_stats(dataset, FEATURES.image)
    messages = []
    expected_text = "INT pixels in [0, 255] (uint8)"
    if image is not None and image.type == statistics_pb2.FeatureNameStatistics.FLOAT:
        low, high = _range(image) or (float("nan"), float("nan"))
        got = f"got FLOAT in [{_fmt(low)}, {_fmt(high)}] (source dtype {_pixel_dtypes(dataset)})"
        if high <= 1.0:
            cause = "the data looks already scaled to [0,1]; feeding it would scale twice."
        elif high <= 255.0:
            cause = ("float pixels in the uint8 range; send uint8 (the model scales by 1/255 "
                     "itself), not floats.")
        else:
            cause = "float values beyond 255 are not 8-bit pixels at all."
        messages.append(f"image: expected {expected_text}; {got} — {cause}")
        return messages
    if image is not None and image.type in (statistics_pb2.FeatureNameStatistics.BYTES,
                                             statistics_pb2.FeatureNameStatistics.STRING):
        messages.append(f"image: expected {expected_text}; got BYTES — encoded image files "
                        "(JPEG/PNG bytes?), not pixels; validate the image files themselves, "
                        "which imgpipe decodes as ingestion does.")
        return messages
    value_range = _range(image)
    if value_range and value_range[1] > 255:
        messages.append(f"image: expected {expected_text}; got INT up to {_fmt(value_range[1])} "
                        f"(source dtype {_pixel_dtypes(dataset)}) — not 8-bit pixels "
                        "(16-bit images, or values scaled the other way?).")
    elif value_range and value_range[0] < 0:
        messages.append(f"image: expected {expected_text}; got negative values down to "
                        f"{_fmt(value_range[0])} — the data looks standardised (mean-subtracted).")
    if "shape" in anomaly_kinds and image is not None:
        common = _common(image)
        h, w, c = expected.height, expected.width, expected.channels
        want = (h or 0) * (w or 0) * (c or 0)
        got = (f"{common.min_num_values}" if common.min_num_values == common.max_num_values
               else f"{common.min_num_values}..{common.max_num_values}")
        cause = "images of another size or channel count."
        if c == 3 and h and w and common.max_num_values == h * w:
            cause = "grayscale images (one channel) where RGB is expected."
        elif c == 1 and h and w and common.max_num_values == h * w * 3:
            cause = "RGB images where grayscale is expected."
        messages.append(f"image: expected {h}x{w}x{c} = {want} values per example; got {got} — "
                        + cause)
    return messages


def _explain(feature: str, info: anomalies_pb2.AnomalyInfo, dataset,
             expected: schema_curation.SchemaExpectations, environment: str) -> List[str]:
    kinds = []
    for reason in info.reason:
        name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
        if "SHAPE" in name:
            kinds.append("shape")
        elif "TYPE" in name and "DATA" in name or name.endswith("UNEXPECTED_DATA_TYPE"):
            kinds.append("type")
        kinds.append(name)
    stats = _feature_stats(dataset, feature)
    if stats is None:
        return [f"{feature}: missing from every example ({info.description})"]
    if feature == FEATURES.image:
        messages = _explain_image(kinds, dataset, expected)
        if messages:
            return messages
    if feature in (FEATURES.height, FEATURES.width, FEATURES.channels):
        want = {FEATURES.height: expected.height, FEATURES.width: expected.width,
                FEATURES.channels: expected.channels}[feature]
        low, high = _range(stats) or (float("nan"), float("nan"))
        got = _fmt(low) if low == high else f"{_fmt(low)}..{_fmt(high)}"
        cause = ""
        if feature == FEATURES.channels and want == 3 and high == 1:
            cause = " — grayscale images where RGB is expected."
        elif feature == FEATURES.channels and want == 3 and high == 4:
            cause = " — RGBA images: drop the alpha channel."
        elif feature != FEATURES.channels:
            cause = " — images of the wrong size (resize them, or fix image.height/width)."
        return [f"{feature}: expected {want}; got {got}{cause}"]
    if feature == FEATURES.label:
        messages = []
        common = _common(stats) if stats is not None else None
        if common is not None and common.num_missing:
            total = common.num_missing + common.num_non_missing
            messages.append(f"label: {common.num_missing} of {total} {environment.lower()} examples "
                            "have no label — every training example needs one.")
        known = set(range(expected.num_classes or 0))
        values = _values(stats)
        outside = sorted((v for v in values if v.lstrip("-").isdigit() and int(v) not in known),
                         key=int)
        value_range = _range(stats)
        if not outside and value_range and expected.num_classes:
            if value_range[1] >= expected.num_classes or value_range[0] < 0:
                outside = [_fmt(value_range[0]), _fmt(value_range[1])]
        if outside:
            names = f" ({', '.join(expected.class_names)})" if expected.class_names else ""
            messages.append(
                f"label: expected class ids 0..{(expected.num_classes or 1) - 1}{names}; got "
                f"{', '.join(outside)} — a class the model does not know (a new class folder?) "
                "or labels misaligned with the images.")
        if messages:
            return messages
    if feature == FEATURES.pixel_dtype:
        return [f"pixel_dtype: expected uint8 pixels; got {_pixel_dtypes(dataset)}."]
    return [f"{feature}: {info.short_description}: {info.description}"]


def _scaled_integer_pixels(dataset) -> Optional[Finding]:
    image = _feature_stats(dataset, FEATURES.image)
    value_range = _range(image)
    if (image is not None and image.type == statistics_pb2.FeatureNameStatistics.INT
            and value_range and value_range[1] <= 1):
        return Finding(FEATURES.image, ERROR,
                       f"image: expected INT pixels in [0, 255] (uint8); got INT only in "
                       f"[{_fmt(value_range[0])}, {_fmt(value_range[1])}] — the pixels look "
                       "scaled to [0,1] and then cast to integers; the picture is lost.",
                       "SCALED_INTEGER_PIXELS")
    return None


def class_names_mismatch(data_names: List[str], schema_names: List[str]) -> Optional[Finding]:
    """Label ids mean classes by position: the data's order must be the schema's."""
    if not data_names or not schema_names:
        return None
    if list(data_names[:len(schema_names)]) != list(schema_names):
        return Finding(FEATURES.label, ERROR,
                       f"label: the data's classes are {list(data_names)} but the schema's are "
                       f"{list(schema_names)} — label ids would mean other classes (set "
                       "data.classes in the config, or draft the schema from this data).",
                       "CLASS_NAMES_MISMATCH")
    return None


def judge(anomalies: anomalies_pb2.Anomalies, statistics: statistics_pb2.DatasetFeatureStatisticsList,
          schema: schema_pb2.Schema, environment: str = schema_curation.TRAINING,
          split: str = "") -> Verdict:
    """TFDV's anomalies + imgpipe's own check -> readable findings."""
    dataset = statistics.datasets[0] if statistics.datasets else statistics_pb2.DatasetFeatureStatistics()
    expected = schema_curation.expectations(schema)
    findings: List[Finding] = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        severity = ERROR if info.severity == anomalies_pb2.AnomalyInfo.ERROR else WARNING
        kind = ",".join(sorted({anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason}))
        if info.reason and all("COMPARATOR" in anomalies_pb2.AnomalyInfo.Type.Name(r.type)
                               for r in info.reason):
            continue  # drift: reported from drift_skew_info below, with the numbers
        for message in _explain(feature, info, dataset, expected, environment):
            findings.append(Finding(feature, severity, message, kind))
    scaled = _scaled_integer_pixels(dataset)
    if scaled:
        findings.append(scaled)

    drift = {}
    for item in anomalies.drift_skew_info:
        feature = "/".join(item.path.step)
        for measurement in item.drift_measurements:
            measure = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(measurement.type)
            drift[feature] = {"measure": measure, "value": measurement.value,
                              "threshold": measurement.threshold}
            if measurement.value > measurement.threshold:
                findings.append(Finding(feature, ERROR, _drift_message(
                    feature, measure, measurement.value, measurement.threshold), "DRIFT"))
    examples = int(dataset.num_examples)
    return Verdict(findings=findings, examples=examples, drift=drift, split=split)


_DRIFT_CAUSES = {
    FEATURES.brightness: "a darker or brighter camera or exposure",
    FEATURES.contrast: "a new camera, compression or resize path",
    FEATURES.mean_red: "a colour cast, or R and B exchanged (BGR vs RGB)",
    FEATURES.mean_blue: "a colour cast, or R and B exchanged (BGR vs RGB)",
    FEATURES.mean_green: "a colour cast",
    FEATURES.aspect_ratio: "another camera or crop: other shapes of picture",
}


def _drift_message(feature: str, measure: str, value: float, threshold: float) -> str:
    what = {FEATURES.image: "pixel", FEATURES.label: "label"}.get(feature, "per-image")
    name = "Jensen-Shannon divergence" if "JENSEN" in measure else "L-infinity distance"
    cause = _DRIFT_CAUSES.get(feature, "a different camera, preprocessing or class mix")
    return (f"{feature}: {what} distribution drifted from the baseline: {name} {value:.3f} "
            f"above the threshold {threshold:g} — {cause}; check before training on it.")


def format_verdicts(verdicts: List[Verdict], header: str = "") -> str:
    lines = [header] if header else []
    for verdict in verdicts:
        state = "OK" if verdict.passed else "FAILED"
        where = f"split {verdict.split}: " if verdict.split else ""
        lines.append(f"{where}{verdict.examples} examples, {state}")
        for finding in verdict.findings:
            lines.append(f"  {finding.severity}: {finding.message}")
        for feature, item in sorted(verdict.drift.items()):
            lines.append(f"  drift {feature}: {item['measure'].replace('_', ' ').lower()} "
                         f"{item['value']:.4f} (threshold {item['threshold']:g})")
    return "\n".join(lines)


def verdicts_json(verdicts: List[Verdict], **extra) -> str:
    return json.dumps({**extra, "passed": all(v.passed for v in verdicts),
                       "splits": [v.as_dict() for v in verdicts]}, indent=2)
