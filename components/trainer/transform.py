"""The preprocessing, written once: the body of Transform's preprocessing_fn.

It runs in tf.Transform (analyzers over the training split) and ends up in
the transform graph that every exported signature calls, so training,
evaluation and serving share one implementation of it.
"""
from __future__ import annotations

import tensorflow as tf

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer.settings import TransformSettings
from imgpipe.contract import FEATURES, ImageSpec, image_ops

LABEL = FEATURES.label
_SCALE = 1.0 / 255.0


def scale_pixels(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """uint8-valued pixels (int64, any layout of H*W*C values) -> float32 [b, H, W, C] in [0, 1]."""
    pixels = tf.reshape(tf.cast(image, tf.float32), [-1, *spec.shape])
    return pixels * _SCALE


def raw_pixels(inputs, spec: ImageSpec) -> tf.Tensor:
    """The batch's uint8-valued pixels: image files decoded and brought to the
    spec by serving_bytes' own ops (decode_and_prepare_batch), or the pixels
    of an array source as they are."""
    if FEATURES.image_encoded in inputs:
        encoded = tf.reshape(inputs[FEATURES.image_encoded], [-1])
        return image_ops.decode_and_prepare_batch(encoded, spec)
    return inputs[FEATURES.image]


def preprocess(inputs, settings: TransformSettings):
    """preprocessing_fn's body: scaled (optionally standardised) image, label as it is."""
    import tensorflow_transform as tft
    pixels = scale_pixels(raw_pixels(inputs, settings.image), settings.image)
    channels = settings.image.channels
    if settings.standardize:
        # Per-channel mean and standard deviation over the training split,
        # computed by tf.Transform and frozen into the graph as constants.
        per_channel = tf.reshape(pixels, [-1, channels])
        mean = tft.mean(per_channel, reduce_instance_dims=False)
        std = tf.sqrt(tft.var(per_channel, reduce_instance_dims=False)) + 1e-6
        pixels = (pixels - mean) / std
    outputs = {FEATURES.image_transformed: pixels}
    if LABEL in inputs:
        outputs[LABEL] = inputs[LABEL]
    return outputs
