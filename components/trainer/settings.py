"""The parameters of Transform and Trainer (TFX's own components): their custom_config.

TFX passes `custom_config` as a JSON dict; these objects are its typed form,
built by create_pipeline and read back in the module files.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from imgpipe.components.settings import ComponentSettings
from imgpipe.components.trainer.user_model import UserModule
from imgpipe.contract import ImageSpec


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    # "cnn" | "resnet" | a backbone of backbones.BACKBONES | "module:function"
    architecture: str = "cnn"
    model_args: Dict[str, Any] = dataclasses.field(default_factory=dict)
    user_module: Optional[UserModule] = None      # set for "module:function"
    input_normalization: str = ""                 # contract.normalization row; "" = the network's own
    weights: str = "none"                         # none | imagenet | a weights file
    conv_filters: Tuple[int, ...] = (32, 64, 64)
    dense_units: int = 64
    dropout: float = 0.3                          # the CNN's, and the backbone head's
    # "valid" with pooling after all but the last conv is the seed's CNN;
    # "same" pools after every conv (keeps the dense layer small).
    padding: str = "valid"
    batch_norm: bool = False


@dataclasses.dataclass(frozen=True)
class AugmentationSettings:
    """Training-only input transformations (augment.py); none is in the exported graph."""
    horizontal_flip: bool = True
    crop_padding: int = 0          # pad by this many pixels (reflect), crop back at random
    cutout: int = 0                # side of a random square set to zero (0: off)
    translation: float = 0.0       # random shift, fraction of the size
    rotation: float = 0.0          # random rotation, fraction of a full turn


@dataclasses.dataclass(frozen=True)
class FitSettings:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"             # adam | adamw | sgd (Nesterov momentum 0.9) | rmsprop
    lr_schedule: str = "constant"       # constant | cosine
    warmup_epochs: int = 0              # linear warm-up before the schedule
    weight_decay: float = 0.0           # decoupled (AdamW, SGD)
    label_smoothing: float = 0.0
    early_stopping_patience: int = 5
    shuffle_buffer: int = 10_000
    seed: int = 0
    # Fine-tuning (backbones): phase 2 unfreezes the top layers at a lower rate.
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 0
    fine_tune_lr_factor: float = 0.1
    mixed_precision: bool = False


class TransformSettings(ComponentSettings):
    image: ImageSpec
    standardize: bool = False           # per-channel mean/std from the training split


class TrainerSettings(ComponentSettings):
    class_names: List[str]
    image: ImageSpec
    model: ModelSettings = ModelSettings()
    fit: FitSettings = FitSettings()
    augmentation: AugmentationSettings = AugmentationSettings()
