"""What the network's first layer receives: the input normalisations, as a table.

The transform graph hands the model float pixels in [0, 1] (the contract's
range). A network may expect something else: Keras Applications backbones
each document their own `preprocess_input` (ResNet50: BGR with the ImageNet
means subtracted; MobileNetV2: [-1, 1]; MobileNetV3 and EfficientNet: 0..255,
they rescale inside). Forgetting it costs accuracy silently, so the model
imgpipe exports applies the row of this table its network names, as its first
layer, and the training record and registry name the row.

Every row is one formula on the 0..255 scale: reorder channels, then
(pixels * 255 - mean) / std per channel.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class InputNormalization:
    name: str
    description: str
    channel_order: str = "RGB"                         # RGB | BGR (what the network reads)
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # per channel, in channel_order, 0..255 scale
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def is_identity_on_unit(self) -> bool:
        """True when the network takes the transform graph's [0, 1] pixels as they are."""
        return self.channel_order == "RGB" and set(self.mean) == {0.0} and set(self.std) == {255.0}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def apply(self, unit_pixels):
        """[.., C] float pixels in [0, 1] -> what the network expects (TensorFlow ops)."""
        import tensorflow as tf
        channels = unit_pixels.shape[-1]
        pixels = unit_pixels * 255.0
        if self.channel_order == "BGR" and channels == 3:
            pixels = tf.reverse(pixels, axis=[-1])
        mean = tf.constant(self.mean[:channels], pixels.dtype)
        std = tf.constant(self.std[:channels], pixels.dtype)
        return (pixels - mean) / std


_IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)   # keras.applications.imagenet_utils
_TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_TORCH_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

NORMALIZATIONS: Dict[str, InputNormalization] = {row.name: row for row in (
    InputNormalization("unit", "RGB in [0, 1] (the contract's range; the built-in CNN and ResNet)",
                       std=(255.0, 255.0, 255.0)),
    InputNormalization("raw", "RGB in 0..255 as float (MobileNetV3, EfficientNet: they rescale "
                       "inside; their preprocess_input is the identity)"),
    InputNormalization("tf", "RGB in [-1, 1] (mode 'tf': MobileNet, MobileNetV2, Inception, Xception)",
                       mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)),
    InputNormalization("caffe", "BGR, 0..255 minus the ImageNet channel means, unscaled "
                       "(mode 'caffe': ResNet50, VGG16/19)",
                       channel_order="BGR", mean=tuple(reversed(_IMAGENET_MEAN_RGB))),
    InputNormalization("torch", "RGB in [0, 1] standardised by the ImageNet mean and std "
                       "(mode 'torch': DenseNet)", mean=_TORCH_MEAN, std=_TORCH_STD),
)}


def normalization(name: str) -> InputNormalization:
    try:
        return NORMALIZATIONS[name]
    except KeyError:
        raise ValueError(f"unknown input normalisation {name!r}; known: "
                         f"{', '.join(NORMALIZATIONS)}") from None
