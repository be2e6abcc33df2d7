"""Training-only augmentation, in the training input pipeline (tf.data).

It runs on the transform graph's output ([0, 1] pixels, before the model's
input normalisation) and only on the training split, so it is in no exported
signature and never touches evaluation or serving.
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer.settings import AugmentationSettings


def is_active(settings: AugmentationSettings) -> bool:
    return bool(settings.horizontal_flip or settings.crop_padding or settings.cutout
                or settings.translation or settings.rotation)


def pad_and_crop(image: tf.Tensor, padding: int) -> tf.Tensor:
    """Reflect-pad by `padding` pixels, crop back to the size at a random offset."""
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
    return tf.image.random_crop(padded, tf.shape(image))


def cutout(image: tf.Tensor, size: int) -> tf.Tensor:
    """Zero a size x size square (clipped at the border) centred at a random pixel."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    centre_y = tf.random.uniform([], 0, height, tf.int32)
    centre_x = tf.random.uniform([], 0, width, tf.int32)
    rows, cols = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    half = size // 2
    inside = ((rows >= centre_y - half) & (rows < centre_y - half + size)
              & (cols >= centre_x - half) & (cols < centre_x - half + size))
    return image * tf.cast(~inside, image.dtype)[..., None]


def make_augment(settings: AugmentationSettings) -> Optional[Callable[[tf.Tensor], tf.Tensor]]:
    """image [H, W, C] -> augmented image, or None when nothing is configured."""
    if not is_active(settings):
        return None
    import tf_keras as keras
    shift = (keras.layers.RandomTranslation(settings.translation, settings.translation,
                                            fill_mode="reflect") if settings.translation else None)
    turn = keras.layers.RandomRotation(settings.rotation, fill_mode="reflect") if settings.rotation else None

    def augment(image: tf.Tensor) -> tf.Tensor:
        if settings.crop_padding:
            image = pad_and_crop(image, settings.crop_padding)
        if settings.horizontal_flip:
            image = tf.image.random_flip_left_right(image)
        if shift is not None:
            image = shift(image, training=True)
        if turn is not None:
            image = turn(image, training=True)
        if settings.cutout:
            image = cutout(image, settings.cutout)
        return image

    return augment
