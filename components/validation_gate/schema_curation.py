"""The curated schema of imgpipe examples; pure functions over schema protos.

TFDV's infer_schema leaves int domains unset (so pixels of 300 or labels of 12
pass) and turns 0/1 features into booleans; the curation here writes down
what the model actually needs instead. Pixel layout (arrays, pixel records):
  image        INT, int_domain [0, 255], fixed shape [H, W, C], always present,
               drift: Jensen-Shannon divergence
  height/width/channels   INT, fixed values
  pixel_dtype  BYTES, "uint8" only
Encoded layout (image files, kept as they arrived; the image size is the
model's business, not the data's, so the schema does not name it):
  image_encoded  BYTES (image domain), one value, always present
  image_format   BYTES, JPEG or PNG
  height/width   INT >= 1; channels INT in [1, 4]; exif_orientation in [1, 8]
Both:
  brightness, contrast, mean_red/green/blue, aspect_ratio   FLOAT in their
               ranges; drift: Jensen-Shannon divergence
  label        INT, categorical int_domain [0, K-1], always present in
               TRAINING, absent in SERVING; drift: L-infinity
  source_id    BYTES, lineage only, no constraints
What ingestion adds besides the image is checked when present, not required,
so that samples logged by a serving system can be validated too.
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
IMAGE_FORMAT_DOMAIN = "image_format"
IMAGE_FORMATS = ("JPEG", "PNG")
# Each property's range: (min, max or None).
PROPERTY_RANGES = {FEATURES.brightness: (0.0, 255.0), FEATURES.contrast: (0.0, 128.0),
                   FEATURES.mean_red: (0.0, 255.0), FEATURES.mean_green: (0.0, 255.0),
                   FEATURES.mean_blue: (0.0, 255.0), FEATURES.aspect_ratio: (0.0, None)}


@dataclasses.dataclass(frozen=True)
class DriftThresholds:
    pixel_js_divergence: float = 0.1
    label_linf: float = 0.1
    property_js_divergence: float = 0.1


@dataclasses.dataclass(frozen=True)
class SchemaExpectations:
    """What a schema says about images and labels, for people and checks."""
    height: Optional[int]
    width: Optional[int]
    channels: Optional[int]
    num_classes: Optional[int]
    class_names: List[str]
    encoded: bool = False          # image files kept encoded: the size is not the data's


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
    _int_range(feature, value, value)


def is_encoded(schema: schema_pb2.Schema) -> bool:
    """Whether `schema` describes the encoded layout (image files)."""
    return any(feature.name == FEATURES.image_encoded for feature in schema.feature)


def curate(schema: Optional[schema_pb2.Schema], *, height: int, width: int, channels: int,
           class_names: Sequence[str], thresholds: DriftThresholds,
           encoded: Optional[bool] = None) -> schema_pb2.Schema:
    """Applies imgpipe's curation to `schema` (a TFDV draft, or None for none).
    The layout is the draft's unless `encoded` says (no draft: pixels)."""
    if not class_names or len(class_names) < 2:
        raise ValueError("a curated schema needs at least two class names")
    curated = schema_pb2.Schema()
    if schema is not None:
        curated.CopyFrom(schema)
    if encoded is None:
        encoded = is_encoded(curated)
    curated.ClearField("default_environment")
    curated.default_environment.extend([TRAINING, SERVING])
    if encoded:
        _curate_encoded(curated)
    else:
        _remove(curated, FEATURES.image_encoded, FEATURES.image_format, FEATURES.exif_orientation)
        _curate_image(curated, height, width, channels)
    _curate_properties(curated)
    _curate_label(curated, class_names)
    _curate_lineage(curated, encoded)
    apply_thresholds(curated, thresholds)
    return curated


def for_layout(schema: schema_pb2.Schema, *, encoded: bool, height: int, width: int,
               channels: int) -> schema_pb2.Schema:
    """`schema` for data of the given layout: itself, or re-curated for the
    other one (pixels get the configured image shape). What it says of labels,
    properties and drift carries over, so an .npz checked against a schema
    drafted from image files meets the pixel checks (float, scale, shape)."""
    if is_encoded(schema) == encoded:
        return schema
    found = expectations(schema)
    converted = curate(schema, height=height, width=width, channels=channels,
                       class_names=found.class_names or [str(i) for i in range(found.num_classes or 2)],
                       thresholds=thresholds_of(schema), encoded=encoded)
    return converted


def thresholds_of(schema: schema_pb2.Schema) -> DriftThresholds:
    """The drift thresholds a schema's comparators hold (defaults where none)."""
    found = {f.name: f.drift_comparator for f in schema.feature}
    default = DriftThresholds()

    def js(names, fallback):
        values = [found[n].jensen_shannon_divergence.threshold for n in names
                  if n in found and found[n].HasField("jensen_shannon_divergence")]
        return values[0] if values else fallback
    label = found.get(FEATURES.label)
    return DriftThresholds(
        pixel_js_divergence=js([FEATURES.image], default.pixel_js_divergence),
        label_linf=label.infinity_norm.threshold if label is not None and
        label.HasField("infinity_norm") else default.label_linf,
        property_js_divergence=js(FEATURES.properties, default.property_js_divergence))


def _remove(curated: schema_pb2.Schema, *names: str) -> None:
    for feature in [f for f in curated.feature if f.name in names]:
        curated.feature.remove(feature)


def _string_domain(curated: schema_pb2.Schema, feature: schema_pb2.Feature, name: str,
                   values: Sequence[str]) -> None:
    feature.type = schema_pb2.BYTES
    feature.ClearField("domain_info")
    feature.domain = name
    for domain in [d for d in curated.string_domain if d.name == name]:
        curated.string_domain.remove(domain)
    curated.string_domain.add(name=name, value=list(values))
    _optional(feature)


def _int_range(feature: schema_pb2.Feature, low: int, high: Optional[int]) -> None:
    feature.type = schema_pb2.INT
    feature.ClearField("domain_info")
    feature.int_domain.min = low
    if high is not None:
        feature.int_domain.max = high
    _optional(feature)


def _curate_encoded(curated: schema_pb2.Schema) -> None:
    """The file's bytes, always present; format, size and orientation in range."""
    _remove(curated, FEATURES.image, FEATURES.pixel_dtype)
    encoded = _feature(curated, FEATURES.image_encoded)
    encoded.type = schema_pb2.BYTES
    encoded.ClearField("domain_info")
    # An image domain: TFDV then keeps byte-length statistics of the files and
    # skips hashing every one of them for top-k and unique counts.
    encoded.image_domain.SetInParent()
    encoded.ClearField("distribution_constraints")
    encoded.presence.min_fraction = 1.0
    encoded.ClearField("value_count")
    encoded.shape.Clear()
    encoded.shape.dim.add(size=1)
    _string_domain(curated, _feature(curated, FEATURES.image_format), IMAGE_FORMAT_DOMAIN,
                   IMAGE_FORMATS)
    for name, low, high in ((FEATURES.height, 1, None), (FEATURES.width, 1, None),
                            (FEATURES.channels, 1, 4), (FEATURES.exif_orientation, 1, 8)):
        _int_range(_feature(curated, name), low, high)


def _curate_properties(curated: schema_pb2.Schema) -> None:
    """Each property a float in its range, optional (older examples lack them)."""
    for name, (low, high) in PROPERTY_RANGES.items():
        feature = _feature(curated, name)
        feature.type = schema_pb2.FLOAT
        feature.ClearField("domain_info")
        feature.float_domain.min = low
        if high is not None:
            feature.float_domain.max = high
        _optional(feature)


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


def _curate_lineage(curated: schema_pb2.Schema, encoded: bool) -> None:
    """pixel_dtype (uint8 only; pixel layout) and source_id: optional, never drift-checked."""
    if not encoded:
        _string_domain(curated, _feature(curated, FEATURES.pixel_dtype), PIXEL_DTYPE_DOMAIN,
                       ["uint8"])
    source = _feature(curated, FEATURES.source_id)
    source.type = schema_pb2.BYTES
    source.ClearField("domain_info")
    source.ClearField("distribution_constraints")
    _optional(source)


def apply_thresholds(schema: schema_pb2.Schema, thresholds: DriftThresholds) -> None:
    """Sets the drift comparators (the config's thresholds are authoritative)."""
    present = {feature.name for feature in schema.feature}
    if FEATURES.image in present:
        image = _feature(schema, FEATURES.image)
        image.drift_comparator.Clear()
        image.drift_comparator.jensen_shannon_divergence.threshold = thresholds.pixel_js_divergence
    for name in (n for n in FEATURES.properties if n in present):
        feature = _feature(schema, name)
        feature.drift_comparator.Clear()
        feature.drift_comparator.jensen_shannon_divergence.threshold = \
            thresholds.property_js_divergence
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
                              fixed(FEATURES.channels), num_classes, names, is_encoded(schema))


def mismatches(schema: schema_pb2.Schema, *, height: int, width: int, channels: int,
               class_names: Sequence[str]) -> List[str]:
    """Where a schema file disagrees with the configuration."""
    found = expectations(schema)
    problems = []
    for key, expected, actual in (("image.height", height, found.height),
                                  ("image.width", width, found.width),
                                  ("image.channels", channels, found.channels)):
        if actual != expected and not found.encoded:
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
        parts = [f"{feature.name:<16} {kind:<6}"]
        if feature.shape.dim:
            parts.append("shape [" + ", ".join(str(d.size) for d in feature.shape.dim) + "]")
        elif feature.HasField("value_count"):
            parts.append(f"{feature.value_count.min}..{feature.value_count.max} values")
        if feature.HasField("int_domain"):
            domain = feature.int_domain
            if domain.HasField("max") and domain.min == domain.max:
                parts.append(f"= {domain.min}")
            elif domain.HasField("max"):
                parts.append(f"in [{domain.min}, {domain.max}]"
                             + (" categorical" if domain.is_categorical else ""))
            else:
                parts.append(f">= {domain.min}")
        if feature.HasField("float_domain"):
            domain = feature.float_domain
            parts.append(f"in [{domain.min:g}, {domain.max:g}]" if domain.HasField("max")
                         else f">= {domain.min:g}")
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
