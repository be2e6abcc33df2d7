"""The classifier: the seed's CNN and its knobs, in tf_keras.

Input: float32 images [H, W, C] already scaled by the transform graph (the
model itself never sees raw pixels; the exported signatures put the
transform in front of it). Augmentation layers are part of the model and
active only when Keras calls it with training=True.
"""
from __future__ import annotations

from typing import Sequence

import tf_keras as keras

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer.settings import ModelSettings
from imgpipe.contract import FEATURES


def build_model(settings: ModelSettings, image_shape: Sequence[int], num_classes: int,
                input_name: str = FEATURES.image_transformed) -> keras.Model:
    layers = keras.layers
    inputs = keras.Input(shape=tuple(image_shape), name=input_name, dtype="float32")
    x = inputs
    augment = []
    if settings.horizontal_flip:
        augment.append(layers.RandomFlip("horizontal", name="augment_flip"))
    if settings.translation:
        augment.append(layers.RandomTranslation(settings.translation, settings.translation,
                                                fill_mode="reflect", name="augment_translate"))
    if settings.rotation:
        augment.append(layers.RandomRotation(settings.rotation, fill_mode="reflect",
                                             name="augment_rotate"))
    for layer in augment:  # random layers are the identity unless training=True
        x = layer(x)
    last = len(settings.conv_filters) - 1
    for index, filters in enumerate(settings.conv_filters):
        x = layers.Conv2D(filters, 3, padding=settings.padding, use_bias=not settings.batch_norm,
                          activation=None if settings.batch_norm else "relu",
                          name=f"conv{index + 1}")(x)
        if settings.batch_norm:
            x = layers.BatchNormalization(name=f"bn{index + 1}")(x)
            x = layers.Activation("relu", name=f"relu{index + 1}")(x)
        if settings.padding == "same" or index < last:
            x = layers.MaxPooling2D(2, name=f"pool{index + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(settings.dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(settings.dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="imgpipe_cnn")
