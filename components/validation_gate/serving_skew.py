"""Serving skew: the prediction log's sampled inputs against the training statistics.

`imgpipe monitor` runs this check beside its prediction-log checks
(imgpipe.serving.monitor): the samples are decoded by the serving ops and
validated with this gate's own code against the curated schema: JS
divergence of the per-image properties (brightness, contrast, R/G/B means,
aspect ratio) for a model trained on image files, of the pixels otherwise.
"""
from __future__ import annotations

import os
from typing import List, Sequence

import numpy as np

from imgpipe.components.image_example_gen import encoding
from imgpipe.components.validation_gate import inprocess, schema_curation
from imgpipe.contract import FEATURES, ImageSpec, image_files, image_ops
from imgpipe.serving.monitor import ALERT, OK, SKIPPED, Check


def _sample_items(paths: Sequence[str]) -> List[tuple]:
    """(key, encoded bytes, ImageInfo) per sample; a pixel sample (.npy, a
    serving_default request) is wrapped as an uncompressed PNG, which decodes
    to itself, so one decoder reads both kinds."""
    import tensorflow as tf
    items = []
    for path in paths:
        if path.endswith(".npy"):
            data = tf.io.encode_png(np.load(path).astype(np.uint8), compression=0).numpy()
        else:
            with open(path, "rb") as handle:
                data = handle.read()
        items.append((path, data, image_files.probe_image(data)))
    return items


def samples_record_batch(paths: Sequence[str], image: ImageSpec, encoded: bool):
    """Sampled inputs decoded exactly as serving decodes them, as examples of
    the training data's layout (encoded: bytes and properties; else pixels)."""
    decoded, failures, _ = image_ops.decode_items(image_ops.make_batch_decoder(image),
                                                  _sample_items(paths), image)
    if failures:
        raise ValueError("; ".join(f"{key}: {reason}" for key, reason in failures))
    ids = [os.path.basename(d.key) for d in decoded]
    if encoded:
        return encoding.encoded_record_batch(decoded, None, ids, image)
    return encoding.examples_record_batch(np.stack([d.pixels for d in decoded]), None, ids, "uint8")


def _watched(schema, threshold: float):
    """The schema with the monitor's threshold on the drift of what the
    layout has: pixels, else the per-image properties."""
    watched = type(schema)()
    watched.CopyFrom(schema)
    names = FEATURES.properties if schema_curation.is_encoded(schema) else (FEATURES.image,)
    for feature in watched.feature:
        if feature.name in names:
            feature.drift_comparator.Clear()
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    return watched, names


def skew_check(sample_paths: Sequence[str], image: ImageSpec, schema,
               training_statistics, threshold: float, minimum: int) -> Check:
    """`imgpipe monitor`'s input-skew check over the prediction log's sampled inputs."""
    logged = [p for p in sample_paths if p]
    present = [p for p in logged if os.path.exists(p)]
    if len(present) < minimum:
        # Samples are files on the serving host: say so when they are logged but not here.
        missing = len(logged) - len(present)
        elsewhere = (f"; {missing} of the {len(logged)} logged sample files are missing on this "
                     "host (serving.samples_root)" if missing else "")
        return Check("input skew", SKIPPED, None, threshold,
                     f"{len(present)} sampled inputs in the window, fewer than {minimum} "
                     f"(serving.sample_rate keeps a share of them){elsewhere}")
    if training_statistics is None:
        return Check("input skew", SKIPPED, None, threshold,
                     "the training statistics recorded for this model are not readable")
    watched, names = _watched(schema, threshold)
    try:
        batch = samples_record_batch(present, image, schema_curation.is_encoded(schema))
    except (ValueError, image_files.BadInput) as error:
        return Check("input skew", SKIPPED, None, threshold,
                     f"sampled inputs that serving accepted do not decode here: {error}")
    verdict = inprocess.validate(inprocess.statistics(batch, watched), watched,
                                 schema_curation.SERVING, baseline=training_statistics)
    measured = {n: verdict.drift[n]["value"] for n in names if n in verdict.drift}
    worst = max(measured, key=measured.get) if measured else None
    divergence = measured.get(worst)
    if verdict.passed:
        return Check("input skew", OK, divergence, threshold,
                     f"{len(present)} sampled inputs match the curated schema and the training "
                     f"distributions (largest JS divergence {divergence:.3f}, {worst})"
                     if worst else f"{len(present)} sampled inputs match the curated schema")
    return Check("input skew", ALERT, divergence, threshold,
                 "; ".join(f.message for f in verdict.findings),
                 {"findings": [f.as_dict() for f in verdict.findings]})
