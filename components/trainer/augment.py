"""Training-only augmentation, in the training input pipeline (tf.data).

It runs on the transform graph's output ([0, 1] pixels, before the model's
input normalisation) and only on the training split, so it is in no exported
signature and never touches evaluation or serving. It works on whole batches
[N, H, W, C], each image drawing its own offsets, mirror and square: one
tf.data call per batch instead of one per image, whose per-element overhead
took CPU from the training step on a 2-core host (BENCHMARKS.md).
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer.settings import AugmentationSettings


def is_active(settings: AugmentationSettings) -> bool:
    return bool(settings.horizontal_flip or settings.crop_padding or settings.cutout
                or settings.translation or settings.rotation)


def pad_and_crop(images: tf.Tensor, padding: int) -> tf.Tensor:
    """Reflect-pad by `padding` pixels, crop each image back to its size at its
    own random offset (uniform over the 2 * padding + 1 choices per axis)."""
    count, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
    top = tf.random.uniform([count, 1], 0, 2 * padding + 1, tf.int32)
    left = tf.random.uniform([count, 1], 0, 2 * padding + 1, tf.int32)
    rows = tf.gather(padded, top + tf.range(height)[tf.newaxis], axis=1, batch_dims=1)
    return tf.gather(rows, left + tf.range(width)[tf.newaxis], axis=2, batch_dims=1)


def flip_left_right(images: tf.Tensor) -> tf.Tensor:
    """Each image mirrored with probability 1/2."""
    mirrored = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) < 0.5
    return tf.where(mirrored, tf.reverse(images, axis=[2]), images)


def cutout(images: tf.Tensor, size: int) -> tf.Tensor:
    """Zero a size x size square (clipped at the border) centred at a random pixel of each image."""
    count, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    top = tf.random.uniform([count, 1, 1], 0, height, tf.int32) - size // 2
    left = tf.random.uniform([count, 1, 1], 0, width, tf.int32) - size // 2
    rows = tf.range(height)[tf.newaxis, :, tf.newaxis]
    cols = tf.range(width)[tf.newaxis, tf.newaxis, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return images * tf.cast(~inside, images.dtype)[..., tf.newaxis]


def make_augment(settings: AugmentationSettings) -> Optional[Callable[[tf.Tensor], tf.Tensor]]:
    """images [N, H, W, C] -> augmented images, or None when nothing is configured."""
    if not is_active(settings):
        return None
    import tf_keras as keras
    shift = (keras.layers.RandomTranslation(settings.translation, settings.translation,
                                            fill_mode="reflect") if settings.translation else None)
    turn = keras.layers.RandomRotation(settings.rotation, fill_mode="reflect") if settings.rotation else None

    def augment(images: tf.Tensor) -> tf.Tensor:
        if settings.crop_padding:
            images = pad_and_crop(images, settings.crop_padding)
        if settings.horizontal_flip:
            images = flip_left_right(images)
        if shift is not None:
            images = shift(images, training=True)
        if turn is not None:
            images = turn(images, training=True)
        if settings.cutout:
            images = cutout(images, settings.cutout)
        return images
    return augment
