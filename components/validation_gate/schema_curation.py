"""The curated schema of imgpipe examples; pure functions over schema protos.

TFDV's infer_schema leaves int domains unset (so pixels of 300 or labels of 12
pass) and turns 0/1 features into booleans; the curation here writes down
what the model actually needs instead:
  image        INT, int_domain [0, 255], fixed shape [H, W, C], always present,
               drift: Jensen-Shannon divergence
  height/width/channels   INT, fixed values
  label        INT, categorical int_domain [0, K-1], always present in
               TRAINING, absent in SERVING; drift: L-infinity
  pixel_dtype  BYTES, "uint8" only
  source_id    BYTES, lineage only, no constraints
height, width, channels, pixel_dtype and source_id are what ingestion adds:
checked when present, not required, so that samples logged by a serving
system (pixels and nothing else) can be validated too. The image's fixed
shape is what binds.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

from tensorflow_metadata.proto.v0 import schema_pb2

from imgpipe.contract import FEATURES

TRAINING = "TRAINING"
SERVING = "SERVING"
ENVIRONMENTS = {"training": TRAINING, "serving": SERVING}
PIXEL_DTYPE_DOMAIN = "pixel_dtype"


@dataclasses.dataclass(frozen=True)
class DriftThresholds:
    pixel_js_divergence: float = 0.1
    label_linf: float = 0.1


@dataclasses.dataclass(frozen=True)
class SchemaExpectations:
    """What a schema says about images and labels, for people and checks."""
    height: Optional[int]
    width: Optional[int]
    channels: Optional[int]
    num_classes: Optional[int]
    class_names: List[str]


def _feature(schema: schema_pb2.Schema, name: str) -> schema_pb2.Feature:
    for feature in schema.feature:
        if feature.name == name:
            return feature
    return schema.feature.add(name=name)


def _optional(feature: schema_pb2.Feature) -> None:
    feature.ClearField("shape")
    feature.presence.min_fraction = 0.0
    feature.presence.min_count = 0
    feature.value_count.min = 1
    feature.value_count.max = 1


def _fixed_int(feature: schema_pb2.Feature, value: int) -> None:
    feature.type = schema_pb2.INT
    feature.ClearField("domain_info")
    feature.int_domain.min = value
    feature.int_domain.max = value
    _optional(feature)


def curate(schema: Optional[schema_pb2.Schema], *, height: int, width: int, channels: int,
           class_names: Sequence[str], thresholds: DriftThresholds) -> schema_pb2.Schema:
    """Applies imgpipe's curation to `schema` (a TFDV draft, or None for none)."""
    if not class_names or len(class_names) < 2:
        raise ValueError("a curated schema needs at least two class names")
    curated = schema_pb2.Schema()
    if schema is not None:
        curated.CopyFrom(schema)
    curated.ClearField("default_environment")
    curated.default_environment.extend([TRAINING, SERVING])
    _curate_image(curated, height, width, channels)
    _curate_label(curated, class_names)
    _curate_lineage(curated)
    apply_thresholds(curated, thresholds)
    return curated


def _curate_image(curated: schema_pb2.Schema, height: int, width: int, channels: int) -> None:
    """uint8 pixels, always present, of the fixed shape; height/width/channels fixed values."""
    image = _feature(curated, FEATURES.image)
    image.type = schema_pb2.INT
    image.ClearField("domain_info")
    image.int_domain.min = 0
    image.int_domain.max = 255
    image.presence.min_fraction = 1.0
    image.shape.Clear()
    for size in (height, width, channels):
        image.shape.dim.add(size=size)
    image.ClearField("value_count")
    for name, value in ((FEATURES.height, height), (FEATURES.width, width),
                        (FEATURES.channels, channels)):
        _fixed_int(_feature(curated, name), value)


def _curate_label(curated: schema_pb2.Schema, class_names: Sequence[str]) -> None:
    """A categorical int in [0, classes), required in training, absent at serving."""
    label = _feature(curated, FEATURES.label)
    label.type = schema_pb2.INT
    label.ClearField("domain_info")
    label.int_domain.name = "label"
    label.int_domain.min = 0
    label.int_domain.max = len(class_names) - 1
    label.int_domain.is_categorical = True
    label.presence.min_fraction = 1.0
    label.shape.Clear()
    label.shape.dim.add(size=1)
    label.ClearField("not_in_environment")
    label.not_in_environment.append(SERVING)
    label.annotation.comment[:] = [f"classes: {', '.join(class_names)}"]


def label_schema() -> schema_pb2.Schema:
    """Only `label`, categorical: what statistics need of a curated schema to
    count classes (TFDV computes categorical statistics from the schema)."""
    schema = schema_pb2.Schema()
    label = schema.feature.add(name=FEATURES.label, type=schema_pb2.INT)
    label.int_domain.is_categorical = True
    return schema


def _curate_lineage(curated: schema_pb2.Schema) -> None:
    """pixel_dtype (uint8 only) and source_id: optional, never drift-checked."""
    dtype = _feature(curated, FEATURES.pixel_dtype)
    dtype.type = schema_pb2.BYTES
    dtype.ClearField("domain_info")
    dtype.domain = PIXEL_DTYPE_DOMAIN
    for domain in list(curated.string_domain):
        if domain.name == PIXEL_DTYPE_DOMAIN:
            curated.string_domain.remove(domain)
    curated.string_domain.add(name=PIXEL_DTYPE_DOMAIN, value=["uint8"])
    _optional(dtype)
    source = _feature(curated, FEATURES.source_id)
    source.type = schema_pb2.BYTES
    source.ClearField("domain_info")
    source.ClearField("distribution_constraints")
    _optional(source)


def apply_thresholds(schema: schema_pb2.Schema, thresholds: DriftThresholds) -> None:
    """Sets the drift comparators (the config's thresholds are authoritative)."""
    image = _feature(schema, FEATURES.image)
    image.drift_comparator.Clear()
    image.drift_comparator.jensen_shannon_divergence.threshold = thresholds.pixel_js_divergence
    label = _feature(schema, FEATURES.label)
    label.drift_comparator.Clear()
    label.drift_comparator.infinity_norm.threshold = thresholds.label_linf


def expectations(schema: schema_pb2.Schema) -> SchemaExpectations:
    features = {f.name: f for f in schema.feature}

    def fixed(name):
        feature = features.get(name)
        if feature is not None and feature.HasField("int_domain") and \
                feature.int_domain.min == feature.int_domain.max:
            return int(feature.int_domain.min)
        return None

    num_classes, names = None, []
    label = features.get(FEATURES.label)
    if label is not None and label.HasField("int_domain"):
        num_classes = int(label.int_domain.max) + 1
        for comment in label.annotation.comment:
            if comment.startswith("classes: "):
                names = [n.strip() for n in comment[len("classes: "):].split(",")]
    return SchemaExpectations(fixed(FEATURES.height), fixed(FEATURES.width),
                              fixed(FEATURES.channels), num_classes, names)


def mismatches(schema: schema_pb2.Schema, *, height: int, width: int, channels: int,
               class_names: Sequence[str]) -> List[str]:
    """Where a schema file disagrees with the configuration."""
    found = expectations(schema)
    problems = []
    for key, expected, actual in (("image.height", height, found.height),
                                  ("image.width", width, found.width),
                                  ("image.channels", channels, found.channels)):
        if actual != expected:
            problems.append(f"{key} is {expected} but the schema expects {actual}")
    if class_names and found.num_classes != len(class_names):
        problems.append(f"data.classes has {len(class_names)} classes but the schema's label "
                        f"domain has {found.num_classes}")
    if class_names and found.class_names and list(class_names) != found.class_names:
        problems.append(f"data.classes {list(class_names)} differ from the schema's "
                        f"{found.class_names}")
    return problems


def describe(schema: schema_pb2.Schema) -> str:
    """A readable summary of a schema (`imgpipe schema show`)."""
    lines = []
    environments = ", ".join(schema.default_environment) or "(none)"
    lines.append(f"environments: {environments}")
    string_domains = {d.name: list(d.value) for d in schema.string_domain}
    for feature in schema.feature:
        kind = schema_pb2.FeatureType.Name(feature.type)
        parts = [f"{feature.name:<12} {kind:<6}"]
        if feature.shape.dim:
            parts.append("shape [" + ", ".join(str(d.size) for d in feature.shape.dim) + "]")
        elif feature.HasField("value_count"):
            parts.append(f"{feature.value_count.min}..{feature.value_count.max} values")
        if feature.HasField("int_domain"):
            domain = feature.int_domain
            if domain.min == domain.max:
                parts.append(f"= {domain.min}")
            else:
                parts.append(f"in [{domain.min}, {domain.max}]"
                             + (" categorical" if domain.is_categorical else ""))
        if feature.domain:
            parts.append(f"one of {string_domains.get(feature.domain, [])}")
        if feature.presence.min_fraction:
            parts.append(f"present in {feature.presence.min_fraction:.0%}")
        else:
            parts.append("optional")
        if feature.not_in_environment:
            parts.append("not in " + ", ".join(feature.not_in_environment))
        comparator = feature.drift_comparator
        if comparator.HasField("jensen_shannon_divergence"):
            parts.append(f"drift: JS divergence > {comparator.jensen_shannon_divergence.threshold:g}")
        if comparator.HasField("infinity_norm"):
            parts.append(f"drift: L-infinity > {comparator.infinity_norm.threshold:g}")
        for comment in feature.annotation.comment:
            parts.append(f"({comment})")
        lines.append("  ".join(parts))
    return "\n".join(lines)
