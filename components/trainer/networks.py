"""The classifier: input normalisation, then a network (built-in or the user's).

`build_classifier` returns the Keras model the Trainer fits and exports:

    image_xf (float32 [H, W, C] in [0, 1], from the transform graph)
      -> normalize_<row>     the network's input normalisation (contract.normalization),
                             absent when the network takes [0, 1] as it is
      -> the network         "cnn" (the source article's CNN), "resnet" (a small
                             residual network for 32-64 px), a Keras Applications
                             backbone with a new head, or "module:function"
      -> probabilities       float32 softmax, one per class

The normalisation is a layer of the model, so every exported signature
applies it and no caller can forget it. Augmentation is not here: it runs in
the training input pipeline only (augment.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence

import tf_keras as keras

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer import backbones, user_model
from imgpipe.components.trainer.settings import ModelSettings
from imgpipe.contract import FEATURES, ImageSpec
from imgpipe.contract.normalization import InputNormalization, normalization

BUILTIN_MODELS = ("cnn", "resnet", *backbones.BACKBONES)
OUTPUT_LAYER = "probabilities"


@keras.saving.register_keras_serializable(package="imgpipe")
class Normalize(keras.layers.Layer):
    """One row of contract.normalization as a layer (no weights)."""

    def __init__(self, row: str, **kwargs):
        super().__init__(**kwargs)
        self.row = row
        self.normalization = normalization(row)

    def call(self, inputs):
        return self.normalization.apply(inputs)

    def get_config(self):
        return {**super().get_config(), "row": self.row}


@dataclasses.dataclass
class Classifier:
    model: keras.Model
    architecture: str
    normalization: InputNormalization
    backbone: Optional[keras.Model] = None
    imagenet_sha256: Optional[str] = None


def default_normalization(settings: ModelSettings) -> str:
    backbone = backbones.known(settings.architecture)
    return backbone.normalization if backbone else "unit"


def input_normalization(settings: ModelSettings) -> InputNormalization:
    """The configured row, or the network's own; a backbone takes no other."""
    own = default_normalization(settings)
    chosen = settings.input_normalization or own
    if backbones.known(settings.architecture) and chosen != own:
        raise ValueError(f"{settings.architecture} was trained on {own!r} input "
                         f"({normalization(own).description}); input_normalization = {chosen!r} "
                         "would feed it something else")
    return normalization(chosen)


def build_classifier(settings: ModelSettings, image: ImageSpec, num_classes: int,
                     input_name: str = FEATURES.image_transformed) -> Classifier:
    row, image_shape = input_normalization(settings), image.shape
    inputs = keras.Input(shape=tuple(image_shape), name=input_name, dtype="float32")
    x = inputs if row.is_identity_on_unit else Normalize(row.name, name=f"normalize_{row.name}")(inputs)
    backbone, imagenet_sha256, probabilities = None, None, None
    if settings.architecture == "cnn":
        x = cnn(x, settings, num_classes)
    elif settings.architecture == "resnet":
        x = resnet(x, num_classes, **settings.model_args)
    elif backbones.known(settings.architecture):
        backbone, imagenet_sha256 = backbones.build_backbone(
            backbones.BACKBONES[settings.architecture], image_shape, settings.weights == "imagenet")
        # training=False: BatchNormalization stays in inference mode, also when fine-tuned.
        x = backbone(x, training=False)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dropout(settings.dropout, name="dropout")(x)
        x = keras.layers.Dense(num_classes, name="logits")(x)
    else:
        probabilities = user_network(x, settings, image, num_classes, row)
    # Float32 probabilities, also under mixed precision.
    outputs = (keras.layers.Activation("softmax", dtype="float32", name=OUTPUT_LAYER)(x)
               if probabilities is None else
               keras.layers.Activation("linear", dtype="float32", name=OUTPUT_LAYER)(probabilities))
    model = keras.Model(inputs, outputs, name="imgpipe_classifier")
    architecture = (f"user:{settings.user_module.module}:{settings.user_module.function}"
                    if settings.user_module else settings.architecture)
    return Classifier(model, architecture, row, backbone, imagenet_sha256)


def cnn(x, settings: ModelSettings, num_classes: int):
    """The source article's CNN and its knobs: conv (BN) ReLU pool..., dense, dropout."""
    layers = keras.layers
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
    return layers.Dense(num_classes, name="logits")(x)


def resnet(x, num_classes: int, widths: Sequence[int] = (16, 32, 64),
           blocks: Sequence[int] = (1, 1, 1), weight_decay: float = 0.0):
    """A small residual network (He et al. 2016, CIFAR variant): a 3x3 stem, stages
    of basic blocks (the first of each later stage halves the size), global
    average pooling, one dense layer. (16, 32, 64) x (1, 1, 1) is ResNet-8."""
    layers = keras.layers
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None

    def conv(tensor, filters, size, strides, name):
        tensor = layers.Conv2D(filters, size, strides=strides, padding="same", use_bias=False,
                               kernel_regularizer=regularizer, name=name)(tensor)
        return layers.BatchNormalization(name=f"{name}_bn")(tensor)

    x = layers.Activation("relu", name="stem_relu")(conv(x, widths[0], 3, 1, "stem"))
    for stage, (filters, count) in enumerate(zip(widths, blocks), start=1):
        for block in range(1, count + 1):
            name, strides = f"stage{stage}_block{block}", 2 if stage > 1 and block == 1 else 1
            residual = layers.Activation("relu", name=f"{name}_relu1")(
                conv(x, filters, 3, strides, f"{name}_conv1"))
            residual = conv(residual, filters, 3, 1, f"{name}_conv2")
            shortcut = x if strides == 1 and x.shape[-1] == filters else conv(
                x, filters, 1, strides, f"{name}_shortcut")
            x = layers.Activation("relu", name=f"{name}_out")(
                layers.Add(name=f"{name}_add")([shortcut, residual]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return layers.Dense(num_classes, kernel_regularizer=regularizer, name="logits")(x)


def user_network(x, settings: ModelSettings, image: ImageSpec, num_classes: int,
                 row: InputNormalization):
    """The user's model (its probabilities), checked against the contract, on the normalised input."""
    user = settings.user_module
    build = user_model.load_function(user)
    args: Dict[str, Any] = dict(settings.model_args)
    try:
        network = build(image, num_classes, args)
    except Exception as error:
        raise user_model.UserModelError(f"training.model {user.reference} raised "
                                        f"{type(error).__name__}: {error}") from None
    user_model.check_model(network, user.reference, image.shape, num_classes,
                           unit_input=row.name == "unit")
    return network(x)
