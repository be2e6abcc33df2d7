"""Transfer learning: where training starts (weights) and which layers learn (phases).

- `training.weights`: "none"; "imagenet" (Keras' download, backbones only;
  backbones.py says what to put where when it cannot be fetched); or a file
  on any tf.io.gfile location: a whole model's weights saved by an earlier
  run (`weights.h5` beside its SavedModel) or a backbone's alone (Keras'
  "notop" files, or `backbone_weights.h5` of an earlier run). Its sha256 is
  the weights' identity in the training record and the registry.
- Fine-tuning as the source article describes it: phase 1 fits the head with
  the backbone frozen; phase 2 unfreezes the top `fine_tune_layers` layers of
  the backbone (BatchNormalization layers among them stay frozen, and the
  backbone is called with training=False, so they also stay in inference
  mode) at learning_rate x fine_tune_lr_factor.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import List, Optional

import tf_keras as keras

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer import backbones


class WeightsError(ValueError):
    """A weights file that is missing or fits neither the model nor its backbone."""


def load_starting_weights(model: keras.Model, backbone: Optional[keras.Model], path: str) -> dict:
    """Load `path` into the whole model, else into the backbone; what was loaded, and its hash."""
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
        raise WeightsError(f"training.weights: no file {path}")
    with tempfile.TemporaryDirectory(prefix="imgpipe-weights-") as local_dir:
        # h5py reads local files only; the copy keeps the name (Keras picks the format by it).
        local = os.path.join(local_dir, os.path.basename(path))
        with tf.io.gfile.GFile(path, "rb") as source, open(local, "wb") as target:
            shutil.copyfileobj(source, target)
        sha256 = backbones.sha256_of(local)
        errors = []
        for target_name, target_model in (("model", model), ("backbone", backbone)):
            if target_model is None:
                continue
            try:
                target_model.load_weights(local)
                return {"source": path, "sha256": sha256, "loaded_into": target_name}
            except (ValueError, KeyError, OSError) as error:
                errors.append(f"the {target_name}: {str(error).splitlines()[0][:160]}")
    raise WeightsError(f"training.weights {path} fits neither {' nor '.join(errors)}")


def freeze_backbone(backbone: keras.Model) -> None:
    backbone.trainable = False


def unfreeze_top(backbone: keras.Model, count: int) -> List[str]:
    """Make the last `count` layers trainable except BatchNormalization; their names."""
    backbone.trainable = True
    top = backbone.layers[-count:] if count > 0 else []
    chosen = {id(layer) for layer in top if not isinstance(layer, keras.layers.BatchNormalization)}
    for layer in backbone.layers:
        layer.trainable = id(layer) in chosen
    return [layer.name for layer in backbone.layers if layer.trainable]


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(keras.backend.count_params(weight) for weight in model.trainable_weights))
