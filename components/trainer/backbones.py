"""Keras Applications backbones: which constructor, and which input normalisation.

The table names each backbone's documented `preprocess_input` as a row of
`contract.normalization`; the exported model applies that row as its first
layer, so a backbone can only ever be fed what it was trained on. Tests
compare the row with `tf_keras.applications.<family>.preprocess_input`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
from typing import Dict, Iterator, List, Optional

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)


@dataclasses.dataclass(frozen=True)
class Backbone:
    name: str            # training.model
    application: str     # tf_keras.applications.<application>
    family: str          # tf_keras.applications.<family>.preprocess_input
    normalization: str   # contract.normalization row
    min_side: int = 32


BACKBONES: Dict[str, Backbone] = {row.name: row for row in (
    Backbone("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "tf"),
    Backbone("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", "raw"),
    Backbone("efficientnet_b0", "EfficientNetB0", "efficientnet", "raw"),
    Backbone("resnet50", "ResNet50", "resnet50", "caffe"),
)}


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched; the message says what to put where."""


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights ($KERAS_HOME/models, default ~/.keras/models)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


@contextlib.contextmanager
def _recorded_downloads() -> Iterator[List[str]]:
    """The paths Keras' get_file returns while building (to hash the weights file)."""
    from tf_keras.src.utils import data_utils
    original, paths = data_utils.get_file, []

    def get_file(*args, **kwargs):
        path = original(*args, **kwargs)
        paths.append(path)
        return path

    data_utils.get_file = get_file
    try:
        yield paths
    finally:
        data_utils.get_file = original


def sha256_of(path: str) -> str:
    import tensorflow as tf
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_backbone(backbone: Backbone, input_shape, imagenet: bool):
    """The application without its top; with imagenet weights: (model, weights file hash)."""
    import tf_keras as keras
    if min(input_shape[:2]) < backbone.min_side:
        raise ValueError(f"{backbone.name} needs images of at least {backbone.min_side}x"
                         f"{backbone.min_side} pixels; [image] is {input_shape[0]}x{input_shape[1]}")
    constructor = getattr(keras.applications, backbone.application)
    if not imagenet:
        return constructor(input_shape=tuple(input_shape), include_top=False, weights=None), None
    with _recorded_downloads() as paths:
        try:
            model = constructor(input_shape=tuple(input_shape), include_top=False, weights="imagenet")
        except Exception as error:  # Keras raises a bare Exception on fetch failures
            raise WeightsUnavailable(_unavailable_message(backbone, error)) from None
    return model, (sha256_of(paths[-1]) if paths else None)


def _unavailable_message(backbone: Backbone, error: Exception) -> str:
    text = str(error)
    url = re.search(r"https?://\S+?(?=[\s:]|$)", text)
    file_name = url.group(0).rsplit("/", 1)[-1] if url else "the weights file"
    where = url.group(0) if url else "the Keras Applications release page"
    return (f"the imagenet weights of {backbone.name} could not be fetched ({text.splitlines()[0][:200]}). "
            f"Download {file_name} from {where} on a machine that can, and put it at "
            f"{os.path.join(keras_cache_dir(), file_name)} (Keras reads it from there), "
            f"or set training.weights to the file's path")


def known(name: str) -> Optional[Backbone]:
    return BACKBONES.get(name)
