"""Trainer logic: data, training, export with signatures and the training record.

`run(fn_args)` is what the module file's run_fn calls. Pure pieces
(settings from the custom config, callbacks, the training record) are plain
functions with their own tests.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import tensorflow as tf
import tf_keras as keras

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer import backbones, progress, signatures, transfer
from imgpipe.components.trainer.augment import make_augment
from imgpipe.components.trainer.networks import build_classifier
from imgpipe.components.trainer.settings import (
    AugmentationSettings,
    FitSettings,
    ModelSettings,
    TrainerSettings,
)
from imgpipe.contract import ARTIFACTS, FEATURES, ImageSpec
from imgpipe.contract.preprocessing import preprocessing_contract


def make_optimizer(fit: FitSettings, learning_rate: float, epochs: int, steps_per_epoch: int):
    """The optimizer with its schedule over `epochs` (one phase): linear warm-up, then
    constant or cosine decay."""
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, fit.warmup_epochs * steps_per_epoch)
    rate = learning_rate
    if fit.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else learning_rate, decay_steps=total - warmup,
            warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
    elif warmup:
        rate = keras.optimizers.schedules.PolynomialDecay(0.0, warmup, learning_rate, power=1.0)
    decay = {"weight_decay": fit.weight_decay} if fit.weight_decay else {}
    if fit.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, **decay)
    if fit.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=fit.weight_decay)
    return {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}[fit.optimizer](rate, **decay)


def make_callbacks(fit: FitSettings, log_dir: str = "", phase: str = "") -> List[keras.callbacks.Callback]:
    """Early stopping (restores the lowest val_loss of the phase), a console line per
    epoch, TensorBoard.

    The epoch lines go to the `imgpipe.progress` logger (progress.py); Keras'
    own per-epoch output (fit's verbose=2) goes to stdout, the run's log file.
    """
    callbacks = [keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=fit.early_stopping_patience, restore_best_weights=True),
        progress.EpochProgress(monitor="val_loss", phase=phase)]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(log_dir, phase or "train"),
                                                     update_freq="epoch"))
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


def training_record(*, model: ModelSettings, fit: FitSettings, augmentation: AugmentationSettings,
                    class_names: Sequence[str], image: ImageSpec, normalization: dict,
                    schema_text: str, data_fingerprint: str, phases: List[dict],
                    parameters: int, weights: dict) -> dict:
    """What the model was trained with; saved beside it and written to the registry later."""
    last = phases[-1] if phases else {"history": {}}
    model_part = {key: value for key, value in dataclasses.asdict(model).items() if key != "user_module"}
    if model.user_module is not None:
        user = model.user_module
        model_part["user_module"] = {"module": user.module, "function": user.function,
                                     "reference": user.reference, "sha256": user.sha256 or None}
    return {
        "model": {**model_part, "parameters": parameters,
                  "backbone": model.architecture if backbones.known(model.architecture) else None},
        "fit": dataclasses.asdict(fit),
        "augmentation": dataclasses.asdict(augmentation),
        "weights": weights,
        "normalization": normalization,
        "class_names": list(class_names),
        ImageSpec.RECORD_KEY: image.to_dict(),
        "input": "uint8 pixels [H, W, C] or encoded JPEG/PNG bytes, decoded, brought to the "
                 f"image spec, scaled to [0, 1] and normalised ({normalization['name']}) "
                 "inside the exported graph",
        "schema_sha256": hashlib.sha256(schema_text.encode()).hexdigest(),
        "training_data_sha256": data_fingerprint,
        "phases": [{key: value for key, value in phase.items() if key != "history"} for phase in phases],
        "epochs_run": sum(phase["epochs_run"] for phase in phases),
        "best_epoch": last.get("best_epoch", 0),
        "history": {k: [float(v) for v in values] for k, values in last["history"].items()},
        "library_versions": library_versions(),
    }


# What the shuffle buffer may hold of transformed (float32) images: 10,000
# CIFAR-sized images, 445 at 224x224. The examples are written in a shuffled
# file order, so a smaller buffer still mixes the classes.
SHUFFLE_BUFFER_BYTES = 256 << 20


def shuffle_buffer_size(fit: FitSettings, image: ImageSpec) -> int:
    return max(1, min(fit.shuffle_buffer, SHUFFLE_BUFFER_BYTES // (4 * image.values_per_image)))


def _examples(fn_args, tft_output, files, settings: TrainerSettings,
              cache_file: str) -> tf.data.Dataset:
    """(pixels, one-hot label) pairs, transformed (decoded, for image files) once and then
    cached in a file: memory stays bounded by the shuffle buffer, not the dataset."""
    from tfx_bsl.public import tfxio
    raw = fn_args.data_accessor.tf_dataset_factory(
        files, tfxio.TensorFlowDatasetOptions(batch_size=settings.fit.batch_size, num_epochs=1,
                                              shuffle=False, label_key=FEATURES.label),
        tft_output.raw_metadata.schema)
    layer = tft_output.transform_features_layer()
    classes = len(settings.class_names)

    def transform(features, label):
        # One-hot labels: label smoothing needs them.
        one_hot = tf.one_hot(tf.reshape(label, [-1]), classes)
        return layer(features)[FEATURES.image_transformed], one_hot

    return raw.map(transform, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache(cache_file)


def training_stream(examples: tf.data.Dataset, batch_size: int, fit: FitSettings, image: ImageSpec,
                    augmentation: AugmentationSettings) -> tf.data.Dataset:
    """Endless shuffled, augmented batches of `examples`; fit takes an epoch's worth of steps.

    One iterator for the whole of training: Keras makes a new one for every
    epoch of a finite dataset, and the gap between epochs cost ~2 s each
    (2 of 46 minutes on the CIFAR-10 preset). Each pass over the images is
    one reshuffle of them all, as before: every image once a pass; a batch
    may span two passes.
    """
    dataset = examples.shuffle(shuffle_buffer_size(fit, image), seed=fit.seed,
                               reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True)
    augment = make_augment(augmentation)
    if augment is not None:   # a batch at a time (augment.py)
        dataset = dataset.map(lambda pixels, label: (augment(pixels), label),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def run(fn_args) -> None:
    import tensorflow_transform as tft
    settings = TrainerSettings.from_dict(fn_args.custom_config)
    tf.keras.utils.set_random_seed(settings.fit.seed)
    keras.utils.set_random_seed(settings.fit.seed)

    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    with tempfile.TemporaryDirectory(prefix="imgpipe-trainer-cache-") as cache, \
            precision_policy(settings.fit.mixed_precision):
        train = _examples(fn_args, tft_output, fn_args.train_files, settings,
                          os.path.join(cache, "train"))
        validation = _examples(fn_args, tft_output, fn_args.eval_files, settings,
                               os.path.join(cache, "validation"))
        validation = validation.batch(settings.fit.batch_size).prefetch(tf.data.AUTOTUNE)
        classifier, weights = _start(settings)
        phases = _fit(settings, classifier, train, validation, fn_args.model_run_dir)
    started = time.perf_counter()
    _export(fn_args, settings, tft_output, classifier, phases, weights)
    progress.report(f"exported the model, its weights and the training record in "
                    f"{time.perf_counter() - started:.0f} s")


@contextlib.contextmanager
def precision_policy(mixed: bool):
    """mixed_float16 while the model is built and trained (float32 outputs either way)."""
    if not mixed:
        yield
        return
    if not tf.config.list_physical_devices("GPU"):
        progress.report("mixed precision: no GPU here; on a CPU float16 has no fast units and "
                        "training is slower, not faster (kept on as configured)")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _start(settings: TrainerSettings):
    """The classifier, and the weights it starts from."""
    model_settings = settings.model
    classifier = build_classifier(model_settings, settings.image, len(settings.class_names),
                                  input_name=FEATURES.image_transformed)
    weights = {"source": model_settings.weights, "sha256": classifier.imagenet_sha256}
    if model_settings.weights not in ("none", "imagenet"):
        weights = transfer.load_starting_weights(classifier.model, classifier.backbone,
                                                 model_settings.weights)
    identity = f" (sha256 {weights['sha256'][:12]})" if weights.get("sha256") else ""
    progress.report(f"model {classifier.architecture}: {classifier.model.count_params():,} "
                    f"parameters, input normalisation {classifier.normalization.name}, weights "
                    f"{weights['source']}{identity}")
    return classifier, weights


def _phases(settings: TrainerSettings, classifier) -> List[dict]:
    """(name, epochs, learning rate, layers to unfreeze) of each training phase."""
    fit = settings.fit
    if classifier.backbone is None or settings.model.weights == "none":
        # Nothing pretrained to keep: the whole network learns from the start.
        return [{"phase": "train", "epochs": fit.epochs, "learning_rate": fit.learning_rate}]
    phases = [{"phase": "head", "epochs": fit.epochs, "learning_rate": fit.learning_rate,
               "unfreeze": 0}]
    if fit.fine_tune_layers and fit.fine_tune_epochs:
        phases.append({"phase": "fine-tune", "epochs": fit.fine_tune_epochs,
                       "learning_rate": fit.learning_rate * fit.fine_tune_lr_factor,
                       "unfreeze": fit.fine_tune_layers})
    return phases


def _fit(settings: TrainerSettings, classifier, train, validation, log_dir: str) -> List[dict]:
    fit, model = settings.fit, classifier.model
    started = time.perf_counter()
    count = int(train.reduce(0, lambda count, _: count + 1).numpy())  # also fills the cache
    if not count:   # an endless stream of nothing would never yield a batch
        raise ValueError("the training split has no examples: nothing to train on "
                         "(check data.split and the data source)")
    batch_size = min(fit.batch_size, count)
    steps = -(-count // batch_size)   # an epoch: one pass over the images
    progress.report(f"training data: {count} images ({steps} batches of {batch_size} an epoch), "
                    f"transformed and cached in {time.perf_counter() - started:.0f} s")
    train = training_stream(train, batch_size, fit, settings.image, settings.augmentation)
    done = []
    for phase in _phases(settings, classifier):
        if classifier.backbone is not None and "unfreeze" in phase:   # head / fine-tune
            if phase["unfreeze"]:
                phase["trainable_layers"] = len(transfer.unfreeze_top(classifier.backbone,
                                                                      phase["unfreeze"]))
            else:
                transfer.freeze_backbone(classifier.backbone)
        phase["trainable_parameters"] = transfer.trainable_parameters(model)
        progress.report(f"phase {phase['phase']}: {phase['epochs']} epochs at learning rate "
                        f"{phase['learning_rate']:g}, {phase['trainable_parameters']:,} trainable "
                        "parameters")
        model.compile(optimizer=make_optimizer(fit, phase["learning_rate"], phase["epochs"], steps),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=fit.label_smoothing),
                      metrics=["accuracy"])
        history = model.fit(train, validation_data=validation, epochs=phase["epochs"], verbose=2,
                            steps_per_epoch=steps,
                            callbacks=make_callbacks(fit, log_dir, phase["phase"])).history
        val_losses = history.get("val_loss", [])
        phase.update(history=history, epochs_run=len(history.get("loss", [])),
                     best_epoch=int(min(range(len(val_losses)), key=val_losses.__getitem__)) + 1
                     if val_losses else 0,
                     best_val_accuracy=float(max(history.get("val_accuracy", [0.0]))))
        done.append(phase)
    return done


def _export(fn_args, settings: TrainerSettings, tft_output, classifier, phases: List[dict],
            weights: dict) -> None:
    """The SavedModel with its signatures, its weights files, and the training record."""
    model, serving_dir = classifier.model, fn_args.serving_model_dir
    tf.saved_model.save(model, serving_dir, signatures=signatures.make_signatures(
        model, tft_output, settings.image, settings.class_names))
    _save_weights(classifier, serving_dir)
    with open(fn_args.schema_path, encoding="utf-8") as handle:
        schema_text = handle.read()
    record = training_record(
        model=settings.model, fit=settings.fit, augmentation=settings.augmentation,
        class_names=settings.class_names, image=settings.image,
        normalization=classifier.normalization.to_dict(), schema_text=schema_text,
        data_fingerprint=files_fingerprint(fn_args.train_files), phases=phases,
        parameters=model.count_params(), weights=weights)
    record_path = ARTIFACTS.training_record_path(serving_dir)
    with tf.io.gfile.GFile(record_path, "w") as handle:
        handle.write(json.dumps(record, indent=2))
    with tf.io.gfile.GFile(ARTIFACTS.contract_path(serving_dir), "w") as handle:
        handle.write(json.dumps(preprocessing_contract(settings.image, record["normalization"]),
                                indent=2))
    print(json.dumps({"best_epoch": record["best_epoch"], "epochs_run": record["epochs_run"],
                      "val_accuracy": phases[-1]["best_val_accuracy"]}), file=sys.stderr)


def _save_weights(classifier, serving_dir: str) -> None:
    """weights.h5 (the whole model) and, for backbones, backbone_weights.h5, in the
    SavedModel's assets: what a later run's training.weights can start from."""
    assets = os.path.join(serving_dir, "assets")
    tf.io.gfile.makedirs(assets)
    pairs = [(ARTIFACTS.weights, classifier.model), (ARTIFACTS.backbone_weights, classifier.backbone)]
    with tempfile.TemporaryDirectory(prefix="imgpipe-weights-") as local:
        for name, part in pairs:
            if part is None:
                continue
            part.save_weights(os.path.join(local, name))  # h5py writes local files only
            tf.io.gfile.copy(os.path.join(local, name), os.path.join(assets, name), overwrite=True)
