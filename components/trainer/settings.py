"""The parameters of Transform and Trainer (TFX's own components): their custom_config.

TFX passes `custom_config` as a JSON dict; these objects are its typed form,
built by create_pipeline and read back in the module files.
"""
from __future__ import annotations

import dataclasses
from typing import List, Tuple

from imgpipe.components.settings import ComponentSettings
from imgpipe.contract import ImageSpec


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    conv_filters: Tuple[int, ...] = (32, 64, 64)
    dense_units: int = 64
    dropout: float = 0.3
    # "valid" with pooling after all but the last conv is the seed's CNN;
    # "same" pools after every conv (keeps the dense layer small).
    padding: str = "valid"
    batch_norm: bool = False
    horizontal_flip: bool = True
    translation: float = 0.0
    rotation: float = 0.0


@dataclasses.dataclass(frozen=True)
class FitSettings:
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    lr_schedule: str = "constant"       # constant | cosine
    early_stopping_patience: int = 5
    shuffle_buffer: int = 10_000
    seed: int = 0


class TransformSettings(ComponentSettings):
    image: ImageSpec
    standardize: bool = False           # per-channel mean/std from the training split


class TrainerSettings(ComponentSettings):
    class_names: List[str]
    image: ImageSpec
    model: ModelSettings = ModelSettings()
    fit: FitSettings = FitSettings()
