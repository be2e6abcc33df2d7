"""A look at the validated data, written beside the validation report.

Samples of the training split as the model will see them (the Transform
graph's decode and policies), the label distribution per split and the
brightness and aspect-ratio histograms (TFDV's, from the statistics the gate
judged), and warnings about small or imbalanced classes. Rendering is
`data_look`'s; this module reads the examples and statistics for it.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, Iterator, List, Optional

import numpy as np
from tensorflow_metadata.proto.v0 import statistics_pb2

from imgpipe.components.validation_gate import data_look
from imgpipe.contract import FEATURES, ImageSpec

_BATCH = 64
# Records read at most for the samples: a class rarer than this leaves blanks.
_MAX_SAMPLE_RECORDS = 5_000
SAMPLES_SPLIT = "train"


def _feature(dataset: statistics_pb2.DatasetFeatureStatistics, name: str):
    for feature in dataset.features:
        if feature.path.step and feature.path.step[-1] == name:
            return feature
    return None


def label_counts(stats_by_split: Dict[str, statistics_pb2.DatasetFeatureStatisticsList],
                 class_names: List[str]) -> Dict[str, Dict[str, int]]:
    """split -> class name -> examples, from the label's categorical statistics."""
    counts = {}
    for split, stats in stats_by_split.items():
        per_class = {name: 0 for name in class_names}
        feature = _feature(stats.datasets[0], FEATURES.label) if stats.datasets else None
        if feature is not None:
            for bucket in feature.string_stats.rank_histogram.buckets:
                index = int(bucket.label) if bucket.label.lstrip("-").isdigit() else -1
                name = class_names[index] if 0 <= index < len(class_names) else bucket.label
                per_class[name] = per_class.get(name, 0) + int(bucket.sample_count)
        counts[split] = per_class
    return counts


def property_histogram(stats: statistics_pb2.DatasetFeatureStatisticsList,
                       name: str) -> Optional[data_look.Histogram]:
    """TFDV's standard (equal-width) histogram of a numeric feature, or None."""
    feature = _feature(stats.datasets[0], name) if stats.datasets else None
    if feature is None:
        return None
    for histogram in feature.num_stats.histograms:
        if histogram.type == statistics_pb2.Histogram.STANDARD and histogram.buckets:
            buckets = histogram.buckets
            edges = [buckets[0].low_value] + [b.high_value for b in buckets]
            # TFDV counts from its quantiles sketch: fractional, so rounded.
            return data_look.Histogram(np.array(edges),
                                       np.rint([b.sample_count for b in buckets]).astype(np.int64))
    return None


def _model_view(records: List[bytes], spec: ImageSpec, encoded: bool):
    """(labels, uint8 pixels [n, H, W, C]) of serialized examples, as the model sees them."""
    import tensorflow as tf

    from imgpipe.components.trainer.transform import raw_pixels
    if encoded:
        parsed = tf.io.parse_example(records, {
            FEATURES.label: tf.io.FixedLenFeature([1], tf.int64, default_value=[-1]),
            FEATURES.image_encoded: tf.io.FixedLenFeature([1], tf.string)})
        pixels = raw_pixels({FEATURES.image_encoded: parsed[FEATURES.image_encoded]}, spec)
        return parsed[FEATURES.label].numpy()[:, 0], pixels.numpy()
    labels, images = [], []
    for record in records:   # the pixel layout: int64 or float values, shown clipped to 0..255
        feature = tf.train.Example.FromString(record).features.feature
        image = feature[FEATURES.image]
        values = image.int64_list.value or image.float_list.value
        label = feature[FEATURES.label].int64_list.value if FEATURES.label in feature else [-1]
        if len(values) == spec.values_per_image:
            labels.append(int(label[0]))
            images.append(np.clip(np.asarray(values), 0, 255).astype(np.uint8).reshape(spec.shape))
    return labels, images


def _record_batches(split_dir: str) -> Iterator[List[bytes]]:
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(_MAX_SAMPLE_RECORDS)
    for batch in dataset.batch(_BATCH):
        yield list(batch.numpy())


def collect_samples(split_dir: str, spec: ImageSpec, class_names: List[str], encoded: bool
                    ) -> Dict[str, List[np.ndarray]]:
    """Up to 9 examples per class of a split, in file order, as the model sees them."""
    collector = data_look.SampleCollector(class_names)
    for records in _record_batches(split_dir):
        labels, pixels = _model_view(records, spec, encoded)
        for label, image in zip(labels, pixels):
            collector.add(int(label), image)
        if collector.full():
            break
    return collector.samples()


def write_look(directory: str, split_dirs: Dict[str, str],
               stats_by_split: Dict[str, statistics_pb2.DatasetFeatureStatisticsList],
               spec: ImageSpec, class_names: List[str], encoded: bool) -> dict:
    """Writes the pictures into `directory`; returns {"pictures": {name: path}, "warnings": [...]}."""
    counts = label_counts(stats_by_split, class_names)
    pictures = {"label distribution": data_look.write_label_distribution(
        counts, os.path.join(directory, data_look.LABELS_PNG))}
    split = SAMPLES_SPLIT if SAMPLES_SPLIT in split_dirs else next(iter(split_dirs))
    pictures["samples"] = data_look.write_samples_grid(
        collect_samples(split_dirs[split], spec, class_names, encoded),
        os.path.join(directory, data_look.SAMPLES_PNG),
        title=f"{split} samples as the model sees them ({spec.describe()}, "
              f"{spec.describe_policies()})")
    for name, file, log_x in ((FEATURES.brightness, data_look.BRIGHTNESS_PNG, False),
                              (FEATURES.aspect_ratio, data_look.ASPECT_PNG, True)):
        histogram = property_histogram(stats_by_split[split], name)
        if histogram is None:
            continue    # examples written before the properties existed
        pictures[name] = data_look.write_histogram(
                histogram, os.path.join(directory, file), f"{name}, {split} split",
                name.replace("_", " "), log_x=log_x and histogram.edges[0] > 0)
    warnings = data_look.data_warnings(counts.get(SAMPLES_SPLIT, {}))
    return {"pictures": pictures, "warnings": warnings}
