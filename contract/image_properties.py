"""Per-image properties: brightness, RMS contrast, channel means, aspect ratio.

Computed on the pixels as the model sees them (after decode, policies and
resize) at ingestion, by `imgpipe validate` and by the monitor on served
samples, so the three are comparable. They are what photo drift moves (a
darker camera, R and B exchanged, a new resize path) when a pixel histogram
over millions of values blurs it.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

import imgpipe  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from imgpipe.contract.names import FEATURES

# ITU-R 601-2 luma: the weights of tf.image.rgb_to_grayscale and Pillow's "L".
_LUMA = (0.299, 0.587, 0.114)


def pixel_properties(pixels: tf.Tensor) -> Dict[str, tf.Tensor]:
    """pixels [n, h, w, c] (any dtype, values as stored) -> brightness (mean
    luma), contrast (std of luma) and R, G, B means, float32 [n] each. Grey
    images report the grey mean for R, G and B; a fourth channel (alpha) is
    not part of the picture. TensorFlow ops: the ingestion decoder runs them
    in its graph, and they are several times faster than NumPy's here."""
    pixels = tf.convert_to_tensor(pixels)
    height, width = pixels.shape[1], pixels.shape[2]
    if height and width:
        # A grid of at most about 64x64 pixels: the means and the spread of a
        # photo do not need all 50,000 (a quarter of the decode's time did).
        step = max(1, min(height, width) // 64)
        pixels = pixels[:, ::step, ::step]
    values = tf.cast(pixels, tf.float32)
    colour = tf.cond(tf.shape(values)[-1] >= 3, lambda: values[..., :3],
                     lambda: tf.tile(values[..., :1], [1, 1, 1, 3]))
    means = tf.reduce_mean(colour, axis=[1, 2])
    luma = tf.tensordot(colour, tf.constant(_LUMA, tf.float32), 1)
    return {FEATURES.brightness: tf.reduce_mean(luma, axis=[1, 2]),
            FEATURES.contrast: tf.math.reduce_std(luma, axis=[1, 2]),
            FEATURES.mean_red: means[:, 0], FEATURES.mean_green: means[:, 1],
            FEATURES.mean_blue: means[:, 2]}


_compiled = tf.function(pixel_properties, reduce_retracing=True)


def image_properties(pixels: np.ndarray, widths: Sequence[int], heights: Sequence[int]
                     ) -> Dict[str, np.ndarray]:
    """A batch of pixels [n, h, w, c] and each image's (upright) source width
    and height -> {property feature name: float32 [n]}."""
    if len(pixels) == 0:
        return {name: np.zeros(0, np.float32) for name in FEATURES.properties}
    found = {name: value.numpy() for name, value in _compiled(pixels).items()}
    return with_aspect(found, widths, heights)


def with_aspect(found: Dict[str, np.ndarray], widths: Sequence[int], heights: Sequence[int]
                ) -> Dict[str, np.ndarray]:
    heights = np.asarray(heights, np.float32)
    return {**found, FEATURES.aspect_ratio: np.asarray(widths, np.float32)
            / np.maximum(heights, 1.0)}


def upright_size(width: int, height: int, orientation: int, applied: bool) -> tuple:
    """(width, height) as the picture stands: EXIF orientations 5-8 turn it a
    quarter, so an applied one swaps them."""
    return (height, width) if applied and orientation >= 5 else (width, height)
