"""Serving skew: the prediction log's sampled inputs against the training statistics.

`imgpipe monitor` runs this check beside its prediction-log checks
(imgpipe.serving.monitor): the samples are decoded by the serving ops and
validated with this gate's own code (JS divergence of pixels, the
[0, 1]-scaled-pixels check, shapes) against the curated schema.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from imgpipe.components.image_example_gen import encoding
from imgpipe.components.validation_gate import inprocess, schema_curation
from imgpipe.contract import FEATURES, ImageSpec, image_ops
from imgpipe.serving.monitor import ALERT, OK, SKIPPED, Check


def load_samples(paths: Sequence[str], image: ImageSpec) -> np.ndarray:
    """Sampled inputs as uint8 [n, h, w, c], decoded exactly as serving decodes them."""
    import tensorflow as tf
    images = []
    for path in paths:
        if path.endswith(".npy"):
            images.append(np.load(path).astype(np.uint8))
        else:
            with open(path, "rb") as handle:
                data = handle.read()
            images.append(image_ops.decode_and_prepare(tf.constant(data), image).numpy())
    return np.stack(images) if images else np.zeros((0, *image.shape), np.uint8)


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
    pixels = load_samples(present, image)
    batch = encoding.examples_record_batch(pixels, None, [os.path.basename(p) for p in present],
                                           "uint8")
    watched = type(schema)()
    watched.CopyFrom(schema)
    for feature in watched.feature:
        if feature.name == FEATURES.image:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    verdict = inprocess.validate(inprocess.statistics(batch, watched), watched,
                                 schema_curation.SERVING, baseline=training_statistics)
    divergence = verdict.drift.get(FEATURES.image, {}).get("value")
    if verdict.passed:
        return Check("input skew", OK, divergence, threshold,
                     f"{len(present)} sampled inputs match the curated schema and the training "
                     f"pixel distribution (JS divergence {divergence:.3f})" if divergence is not None
                     else f"{len(present)} sampled inputs match the curated schema")
    return Check("input skew", ALERT, divergence, threshold,
                 "; ".join(f.message for f in verdict.findings),
                 {"findings": [f.as_dict() for f in verdict.findings]})
