"""The preprocessing, written once: the body of Transform's preprocessing_fn.

It runs in tf.Transform (analyzers over the training split) and ends up in
the transform graph that every exported signature calls, so training,
evaluation and serving share one implementation of it.
"""
from __future__ import annotations

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from imgpipe.components.image_example_gen import encoding

IMAGE_XF = "image_xf"
LABEL = encoding.LABEL_FEATURE
_SCALE = 1.0 / 255.0


def scale_pixels(image: tf.Tensor, height: int, width: int, channels: int) -> tf.Tensor:
    """uint8-valued pixels (int64, any layout of H*W*C values) -> float32 [b, H, W, C] in [0, 1]."""
    pixels = tf.reshape(tf.cast(image, tf.float32), [-1, height, width, channels])
    return pixels * _SCALE


def preprocess(inputs, *, height: int, width: int, channels: int, standardize: bool):
    """preprocessing_fn's body: scaled (optionally standardised) image, label as it is."""
    import tensorflow_transform as tft
    pixels = scale_pixels(inputs[encoding.IMAGE_FEATURE], height, width, channels)
    if standardize:
        # Per-channel mean and standard deviation over the training split,
        # computed by tf.Transform and frozen into the graph as constants.
        per_channel = tf.reshape(pixels, [-1, channels])
        mean = tft.mean(per_channel, reduce_instance_dims=False)
        std = tf.sqrt(tft.var(per_channel, reduce_instance_dims=False)) + 1e-6
        pixels = (pixels - mean) / std
    outputs = {IMAGE_XF: pixels}
    if LABEL in inputs:
        outputs[LABEL] = inputs[LABEL]
    return outputs
