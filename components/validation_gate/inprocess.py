"""Validation without a pipeline: a source -> Arrow -> TFDV statistics -> verdict.

For `imgpipe validate` (serving-skew checks, CI gates) and `imgpipe schema
infer`. Arrays and TFRecords are taken exactly as they are; image files go
through ingestion's decoding (the shared TF ops) and its conversions are
reported. Everything is held in memory: it is meant for samples (thousands
of images), not for whole training sets, which the pipeline handles.
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from imgpipe.components.image_example_gen import encoding, sources
from imgpipe.components.validation_gate import checks

_BATCH = 256


class InputError(ValueError):
    """The source or baseline cannot be read (exit code 2 in the CLI)."""


@dataclasses.dataclass
class LoadedSource:
    record_batch: pa.RecordBatch
    format: str
    conversions: Dict[str, int]
    quarantine: List[dict]
    class_names: List[str]


def _image_files(root: str) -> Dict[str, List[str]]:
    """class name ('' for unlabelled) -> image paths."""
    entries = sorted(os.listdir(root))
    folders = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    if folders:
        return {name: sorted(os.path.join(root, name, f) for f in os.listdir(os.path.join(root, name)))
                for name in folders}
    return {"": [os.path.join(root, e) for e in entries]}


@dataclasses.dataclass
class FolderArrays:
    x: np.ndarray                   # uint8 [n, height, width, channels]
    y: Optional[np.ndarray]         # label ids, None for a folder of images alone
    source_ids: List[str]
    class_names: List[str]
    conversions: Dict[str, int]
    quarantine: List[dict]


def load_folder_arrays(root: str, height: int, width: int, channels: int,
                       classes: Sequence[str] = (),
                       max_image_pixels: int = encoding.DEFAULT_MAX_IMAGE_PIXELS) -> FolderArrays:
    """Decodes a folder exactly as ingestion does (same probe, ops and label rule)."""
    from imgpipe.components.image_example_gen import image_ops
    by_class = _image_files(root)
    labelled = "" not in by_class
    # Label ids by ingestion's own rule (configured order, then unknown folders).
    names = sources.scan_class_folders([root], list(classes)).class_names if labelled else []
    class_ids = {name: index for index, name in enumerate(names)}
    decoder = image_ops.make_batch_decoder(height, width, channels)
    quarantine, conversions = [], Counter()
    items = []
    for name, paths in by_class.items():
        for path in paths:
            if not encoding.is_candidate_image(path):
                quarantine.append({"path": path, "reason": "not an image file", "kind": "ignored"})
                continue
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                info = encoding.probe_image(data, max_image_pixels)
            except (OSError, encoding.BadInput) as error:
                quarantine.append({"path": path, "reason": str(error), "kind": "bad"})
                continue
            items.append((path, data, info, class_ids.get(name)))
    pixels, labels, ids = [], [], []
    for start in range(0, len(items), _BATCH):
        chunk = items[start:start + _BATCH]
        label_of = {item[0]: item[3] for item in chunk}
        decoded, failures, counts = image_ops.decode_items(
            decoder, [item[:3] for item in chunk], height, width, channels)
        quarantine += [{"path": path, "reason": reason, "kind": "bad"} for path, reason in failures]
        conversions.update(counts)
        for path, image, _ in decoded:
            pixels.append(image)
            labels.append(label_of[path])
            ids.append(os.path.relpath(path, root))
    if not pixels:
        raise InputError(f"{root}: no readable JPEG or PNG images")
    return FolderArrays(np.stack(pixels), np.array(labels) if labelled else None, ids, names,
                        dict(conversions), quarantine)


def _load_folder(root: str, height: int, width: int, channels: int, classes: Sequence[str],
                 max_image_pixels: int) -> LoadedSource:
    arrays = load_folder_arrays(root, height, width, channels, classes, max_image_pixels)
    batch = encoding.examples_record_batch(arrays.x, arrays.y, arrays.source_ids, "uint8")
    return LoadedSource(batch, sources.FOLDERS, arrays.conversions, arrays.quarantine,
                        arrays.class_names)


def _load_npz(path: str) -> LoadedSource:
    try:
        layout = sources.inspect_npz(path)
        with sources.NpzReader(path) as reader:
            x = encoding.as_nhwc(reader.read_all("x"), path)
            y = encoding.labels_from_array(reader.read_all("y"), len(x), path) \
                if layout.has_labels else None
    except (sources.SourceError, encoding.BadInput) as error:
        raise InputError(str(error)) from None
    ids = [f"{os.path.basename(path)}[{i}]" for i in range(len(x))]
    batch = encoding.examples_record_batch(x, y, ids, str(x.dtype))
    return LoadedSource(batch, sources.NPZ, {}, [], layout.class_names or [])


def _load_tfrecords(pattern: str) -> LoadedSource:
    import tensorflow as tf
    from tfx_bsl.coders import example_coder
    files = sorted(tf.io.gfile.glob(os.path.join(pattern, "*") if os.path.isdir(pattern) else pattern))
    if not files:
        raise InputError(f"{pattern}: no TFRecord files")
    records = []
    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        try:
            records += list(tf.data.TFRecordDataset(path, compression_type=compression)
                            .as_numpy_iterator())
        except tf.errors.OpError as error:
            raise InputError(f"{path}: not a readable TFRecord file ({error.message})") from None
    if not records:
        raise InputError(f"{pattern}: the TFRecord files hold no records")
    try:
        batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)
    except Exception as error:
        raise InputError(f"{pattern}: records are not tf.Examples ({error})") from None
    return LoadedSource(batch, sources.TFRECORD, {}, [], [])


def load_source(source: str, *, height: int, width: int, channels: int,
                classes: Sequence[str] = (), max_image_pixels: int = encoding.DEFAULT_MAX_IMAGE_PIXELS
                ) -> LoadedSource:
    if not os.path.exists(source) and not any(ch in source for ch in "*?["):
        raise InputError(f"{source}: no such file or folder")
    try:
        kind = sources.detect_format(source)
    except sources.SourceError as error:
        raise InputError(str(error)) from None
    if kind == sources.NPZ:
        return _load_npz(source)
    if kind == sources.TFRECORD:
        return _load_tfrecords(source)
    return _load_folder(source, height, width, channels, classes, max_image_pixels)


def statistics(record_batch: pa.RecordBatch, schema: Optional[schema_pb2.Schema] = None
               ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of one in-memory batch (the schema makes `label` categorical)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    options = tfdv.StatsOptions(schema=schema) if schema is not None else tfdv.StatsOptions()
    return stats_impl.generate_statistics_in_memory(record_batch, options)


def load_statistics_file(path: str) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
    """A statistics file or a TFX statistics artifact folder (its train split);
    local or any tf.io.gfile location (a cluster run's gs:// artifacts)."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    candidates = [path]
    if tf.io.gfile.isdir(path):
        candidates = [os.path.join(path, "Split-train", "FeatureStats.pb"),
                      os.path.join(path, "FeatureStats.pb")]
    for candidate in candidates:
        if tf.io.gfile.exists(candidate) and not tf.io.gfile.isdir(candidate):
            try:
                return tfdv.load_stats_binary(candidate)
            except Exception:
                try:
                    return tfdv.load_statistics(candidate)
                except Exception as error:
                    raise InputError(f"{candidate}: not a TFDV statistics file ({error})") from None
    return None


def validate(statistics_list: statistics_pb2.DatasetFeatureStatisticsList,
             schema: schema_pb2.Schema, environment: str,
             baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList] = None,
             split: str = "") -> checks.Verdict:
    import tensorflow_data_validation as tfdv
    anomalies = tfdv.validate_statistics(statistics_list, schema, environment=environment,
                                         previous_statistics=baseline)
    return checks.judge(anomalies, statistics_list, schema, environment, split=split)
