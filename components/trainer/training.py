"""Trainer logic: data, training, export with signatures and the training record.

`run(fn_args)` is what the module file's run_fn calls. Pure pieces
(settings from the custom config, callbacks, the training record) are plain
functions with their own tests.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import sys
from typing import Any, Dict, List, Sequence

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from imgpipe.components.image_example_gen import encoding
from imgpipe.components.trainer import signatures
from imgpipe.components.trainer.model import ModelSettings, build_model
from imgpipe.components.trainer.transform import IMAGE_XF

TRAINING_RECORD = "training_config.json"


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


def settings_from_config(custom_config: Dict[str, Any]):
    """(ModelSettings, FitSettings) from the Trainer's custom_config."""
    model = ModelSettings(**{**custom_config["model"],
                             "conv_filters": tuple(custom_config["model"]["conv_filters"])})
    return model, FitSettings(**custom_config["fit"])


def make_optimizer(fit: FitSettings, steps_per_epoch: int):
    rate = fit.learning_rate
    if fit.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(fit.learning_rate,
                                                      decay_steps=max(1, fit.epochs * steps_per_epoch))
    return {"adam": keras.optimizers.Adam, "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
            "rmsprop": keras.optimizers.RMSprop}[fit.optimizer](rate)


def make_callbacks(fit: FitSettings, log_dir: str = "") -> List[keras.callbacks.Callback]:
    callbacks = [keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=fit.early_stopping_patience, restore_best_weights=True)]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
    return callbacks


def files_fingerprint(patterns: Sequence[str]) -> str:
    """sha256 over the training files' names and contents, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for pattern in patterns for p in tf.io.gfile.glob(pattern)):
        digest.update(os.path.basename(path).encode())
        with tf.io.gfile.GFile(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> Dict[str, str]:
    from importlib import metadata
    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "tf-keras", "tfx", "tensorflow-transform", "apache-beam", "imgpipe"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def training_record(*, model: ModelSettings, fit: FitSettings, class_names: Sequence[str],
                    image_shape: Sequence[int], schema_text: str, data_fingerprint: str,
                    history: Dict[str, List[float]], best_epoch: int, parameters: int) -> dict:
    """What the model was trained with; saved beside it and written to the registry later."""
    return {
        "model": {**dataclasses.asdict(model), "parameters": parameters},
        "fit": dataclasses.asdict(fit),
        "augmentation": {"horizontal_flip": model.horizontal_flip,
                         "translation": model.translation, "rotation": model.rotation},
        "class_names": list(class_names),
        "image_shape": list(image_shape),
        "input": "uint8 pixels [H, W, C], scaled by 1/255 inside the exported graph",
        "schema_sha256": hashlib.sha256(schema_text.encode()).hexdigest(),
        "training_data_sha256": data_fingerprint,
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": best_epoch,
        "history": {k: [float(v) for v in values] for k, values in history.items()},
        "library_versions": library_versions(),
    }


def _dataset(fn_args, tft_output, files, fit: FitSettings, training: bool) -> tf.data.Dataset:
    from tfx_bsl.public import tfxio
    raw = fn_args.data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=fit.batch_size, num_epochs=1,
                                              shuffle=False, label_key=encoding.LABEL_FEATURE),
        tft_output.raw_metadata.schema)
    layer = tft_output.transform_features_layer()

    def transform(features, label):
        return layer(features)[IMAGE_XF], label

    # Transformed once, then cached: the preprocessing is the transform graph.
    dataset = raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
    if training:
        dataset = dataset.shuffle(fit.shuffle_buffer, seed=fit.seed, reshuffle_each_iteration=True)
    return dataset.batch(fit.batch_size).prefetch(tf.data.AUTOTUNE)


def run(fn_args) -> None:
    import tensorflow_transform as tft
    config = fn_args.custom_config
    model_settings, fit = settings_from_config(config)
    class_names, image_shape = config["class_names"], config["image_shape"]
    tf.keras.utils.set_random_seed(fit.seed)
    keras.utils.set_random_seed(fit.seed)

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args, tft_output, fn_args.train_files, fit, training=True)
    validation = _dataset(fn_args, tft_output, fn_args.eval_files, fit, training=False)
    steps = int(train.reduce(0, lambda count, _: count + 1).numpy())  # also fills the cache

    model = build_model(model_settings, image_shape, len(class_names), input_name=IMAGE_XF)
    model.compile(optimizer=make_optimizer(fit, steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(train, validation_data=validation, epochs=fit.epochs, verbose=2,
                        callbacks=make_callbacks(fit, fn_args.model_run_dir))
    val_losses = history.history.get("val_loss", [])
    best_epoch = int(min(range(len(val_losses)), key=val_losses.__getitem__)) + 1 if val_losses else 0

    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures.make_signatures(
        model, tft_output, image_shape, class_names))
    with open(fn_args.schema_path, encoding="utf-8") as handle:
        schema_text = handle.read()
    record = training_record(
        model=model_settings, fit=fit, class_names=class_names, image_shape=image_shape,
        schema_text=schema_text, data_fingerprint=files_fingerprint(fn_args.train_files),
        history=history.history, best_epoch=best_epoch, parameters=model.count_params())
    assets = os.path.join(fn_args.serving_model_dir, "assets")
    tf.io.gfile.makedirs(assets)
    with tf.io.gfile.GFile(os.path.join(assets, TRAINING_RECORD), "w") as handle:
        handle.write(json.dumps(record, indent=2))
    print(json.dumps({"best_epoch": best_epoch, "epochs_run": record["epochs_run"],
                      "val_accuracy": max(history.history.get("val_accuracy", [0.0]))}),
          file=sys.stderr)
