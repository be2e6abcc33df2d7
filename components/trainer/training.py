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
import tempfile
from typing import Dict, List, Sequence

import tensorflow as tf
import tf_keras as keras

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer import progress, signatures
from imgpipe.components.trainer.model import build_model
from imgpipe.components.trainer.settings import FitSettings, ModelSettings, TrainerSettings
from imgpipe.contract import ARTIFACTS, FEATURES, ImageSpec


def make_optimizer(fit: FitSettings, steps_per_epoch: int):
    rate = fit.learning_rate
    if fit.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(fit.learning_rate,
                                                      decay_steps=max(1, fit.epochs * steps_per_epoch))
    return {"adam": keras.optimizers.Adam, "sgd": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
            "rmsprop": keras.optimizers.RMSprop}[fit.optimizer](rate)


def make_callbacks(fit: FitSettings, log_dir: str = "") -> List[keras.callbacks.Callback]:
    """Early stopping (keeps the lowest val_loss), a console line per epoch, TensorBoard.

    The epoch lines go to the `imgpipe.progress` logger (progress.py); Keras'
    own per-epoch output (fit's verbose=2) goes to stdout, the run's log file.
    """
    callbacks = [keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=fit.early_stopping_patience, restore_best_weights=True),
        progress.EpochProgress(monitor="val_loss")]
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
                    image: ImageSpec, schema_text: str, data_fingerprint: str,
                    history: Dict[str, List[float]], best_epoch: int, parameters: int) -> dict:
    """What the model was trained with; saved beside it and written to the registry later."""
    return {
        "model": {**dataclasses.asdict(model), "parameters": parameters},
        "fit": dataclasses.asdict(fit),
        "augmentation": {"horizontal_flip": model.horizontal_flip,
                         "translation": model.translation, "rotation": model.rotation},
        "class_names": list(class_names),
        ImageSpec.RECORD_KEY: image.to_dict(),
        "input": "uint8 pixels [H, W, C] or encoded JPEG/PNG bytes, decoded, brought to the "
                 "image spec and scaled by 1/255 inside the exported graph",
        "schema_sha256": hashlib.sha256(schema_text.encode()).hexdigest(),
        "training_data_sha256": data_fingerprint,
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": best_epoch,
        "history": {k: [float(v) for v in values] for k, values in history.items()},
        "library_versions": library_versions(),
    }


# What the shuffle buffer may hold of transformed (float32) images: 10,000
# CIFAR-sized images, 445 at 224x224. The examples are written in a shuffled
# file order, so a smaller buffer still mixes the classes.
SHUFFLE_BUFFER_BYTES = 256 << 20


def shuffle_buffer_size(fit: FitSettings, image: ImageSpec) -> int:
    return max(1, min(fit.shuffle_buffer, SHUFFLE_BUFFER_BYTES // (4 * image.values_per_image)))


def _dataset(fn_args, tft_output, files, fit: FitSettings, image: ImageSpec,
             cache_file: str, training: bool) -> tf.data.Dataset:
    from tfx_bsl.public import tfxio
    raw = fn_args.data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=fit.batch_size, num_epochs=1,
                                              shuffle=False, label_key=FEATURES.label),
        tft_output.raw_metadata.schema)
    layer = tft_output.transform_features_layer()

    def transform(features, label):
        return layer(features)[FEATURES.image_transformed], label

    # Transformed (decoded, for image files) once, then cached in a file:
    # memory stays bounded by the shuffle buffer, not the dataset.
    dataset = raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache(cache_file)
    if training:
        dataset = dataset.shuffle(shuffle_buffer_size(fit, image), seed=fit.seed,
                                  reshuffle_each_iteration=True)
    return dataset.batch(fit.batch_size).prefetch(tf.data.AUTOTUNE)


def run(fn_args) -> None:
    import tensorflow_transform as tft
    settings = TrainerSettings.from_dict(fn_args.custom_config)
    fit, image = settings.fit, settings.image
    tf.keras.utils.set_random_seed(fit.seed)
    keras.utils.set_random_seed(fit.seed)

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    with tempfile.TemporaryDirectory(prefix="imgpipe-trainer-cache-") as cache:
        train = _dataset(fn_args, tft_output, fn_args.train_files, fit, image,
                         os.path.join(cache, "train"), training=True)
        validation = _dataset(fn_args, tft_output, fn_args.eval_files, fit, image,
                              os.path.join(cache, "validation"), training=False)
        model, history = _fit(settings, train, validation, fn_args.model_run_dir)
    _export(fn_args, settings, tft_output, model, history)


def _fit(settings: TrainerSettings, train, validation, log_dir: str):
    model_settings, fit, image = settings.model, settings.fit, settings.image
    steps = int(train.reduce(0, lambda count, _: count + 1).numpy())  # also fills the cache

    model = build_model(model_settings, image.shape, len(settings.class_names),
                        input_name=FEATURES.image_transformed)
    model.compile(optimizer=make_optimizer(fit, steps), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(train, validation_data=validation, epochs=fit.epochs, verbose=2,
                        callbacks=make_callbacks(fit, log_dir))
    return model, history


def _export(fn_args, settings: TrainerSettings, tft_output, model, history) -> None:
    """The SavedModel with its signatures, and the training record beside it."""
    model_settings, fit = settings.model, settings.fit
    class_names, image = settings.class_names, settings.image
    val_losses = history.history.get("val_loss", [])
    best_epoch = int(min(range(len(val_losses)), key=val_losses.__getitem__)) + 1 if val_losses else 0

    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=signatures.make_signatures(
        model, tft_output, image, class_names))
    with open(fn_args.schema_path, encoding="utf-8") as handle:
        schema_text = handle.read()
    record = training_record(
        model=model_settings, fit=fit, class_names=class_names, image=image,
        schema_text=schema_text, data_fingerprint=files_fingerprint(fn_args.train_files),
        history=history.history, best_epoch=best_epoch, parameters=model.count_params())
    record_path = ARTIFACTS.training_record_path(fn_args.serving_model_dir)
    tf.io.gfile.makedirs(os.path.dirname(record_path))
    with tf.io.gfile.GFile(record_path, "w") as handle:
        handle.write(json.dumps(record, indent=2))
    print(json.dumps({"best_epoch": best_epoch, "epochs_run": record["epochs_run"],
                      "val_accuracy": max(history.history.get("val_accuracy", [0.0]))}),
          file=sys.stderr)
