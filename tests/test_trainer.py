"""Model, preprocessing and training pieces, without a pipeline."""
import json

import numpy as np
import tensorflow as tf
import tf_keras as keras

from imgpipe.components.trainer import training, transform
from imgpipe.components.trainer.networks import build_classifier
from imgpipe.components.trainer.settings import ModelSettings, TrainerSettings
from imgpipe.contract import ImageSpec


def test_default_model_is_the_seed_cnn():
    model = build_classifier(ModelSettings(), ImageSpec(32, 32, 3), 10).model
    assert model.count_params() == 122_570  # the seed's parameter count
    names = [layer.name for layer in model.layers]
    assert names == ["image_xf", "conv1", "pool1", "conv2", "pool2", "conv3", "flatten", "dense",
                     "dropout", "logits", "probabilities"]
    assert model.input_shape == (None, 32, 32, 3)


def test_batch_norm_variant_keeps_the_size():
    model = build_classifier(ModelSettings(padding="same", batch_norm=True), ImageSpec(32, 32, 3),
                             10).model
    assert 120_000 <= model.count_params() <= 150_000


def test_inference_is_deterministic():
    model = build_classifier(ModelSettings(), ImageSpec(32, 32, 3), 4).model
    x = tf.random.stateless_uniform([8, 32, 32, 3], seed=[1, 2])
    np.testing.assert_array_equal(model(x, training=False).numpy(), model(x, training=False).numpy())


def test_pixels_are_scaled_once_to_unit_range():
    image = tf.constant(np.arange(2 * 4 * 4 * 3).reshape(2, 48) % 256, tf.int64)
    pixels = transform.scale_pixels(image, ImageSpec(4, 4, 3))
    assert pixels.dtype == tf.float32 and pixels.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(pixels.numpy().reshape(2, 48), image.numpy() / 255.0, rtol=1e-6)


def test_early_stopping_restores_the_best_weights():
    # Validation labels are the opposite of training labels: validation loss
    # is lowest early and rises as the model learns the training set.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = keras.Sequential([keras.layers.Dense(2, activation="softmax", input_shape=(4,))])
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    snapshots = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: snapshots.append([w.copy() for w in model.get_weights()]))
    fit = training.FitSettings(epochs=12, early_stopping_patience=3)
    history = model.fit(x, y, validation_data=(x, 1 - y), epochs=fit.epochs, verbose=0,
                        callbacks=[record, *training.make_callbacks(fit)])
    losses = history.history["val_loss"]
    best = int(np.argmin(losses))
    assert len(losses) < fit.epochs and best < len(losses) - 1  # it stopped, after the best
    for restored, kept in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(restored, kept)


def test_settings_and_training_record():
    custom = {"class_names": ["a", "b"], "image": {"height": 8, "width": 8, "channels": 3},
              "model": {"conv_filters": [8, 16], "dense_units": 8, "dropout": 0.1,
                        "padding": "same", "batch_norm": True},
              "augmentation": {"horizontal_flip": False, "cutout": 4},
              "fit": {"epochs": 2, "batch_size": 4, "learning_rate": 0.01, "optimizer": "sgd",
                      "lr_schedule": "cosine", "early_stopping_patience": 1,
                      "shuffle_buffer": 10, "seed": 3}}
    settings = TrainerSettings.from_dict(json.loads(json.dumps(custom)))  # as TFX passes it
    model_settings, fit = settings.model, settings.fit
    assert model_settings.conv_filters == (8, 16) and fit.optimizer == "sgd"
    assert TrainerSettings.from_json(settings.to_json()) == settings
    phases = [{"phase": "head", "epochs": 2, "epochs_run": 2, "best_epoch": 2,
               "history": {"loss": [1.0, 0.5]}},
              {"phase": "fine-tune", "epochs": 3, "epochs_run": 1, "best_epoch": 1,
               "history": {"loss": [0.4]}}]
    record = training.training_record(
        model=model_settings, fit=fit, augmentation=settings.augmentation, class_names=["a", "b"],
        image=settings.image, normalization={"name": "unit"}, schema_text="feature {}",
        data_fingerprint="abc", phases=phases, parameters=100,
        weights={"source": "none", "sha256": None})
    assert record["augmentation"] == {"horizontal_flip": False, "crop_padding": 0, "cutout": 4,
                                      "translation": 0.0, "rotation": 0.0}
    assert record["class_names"] == ["a", "b"] and record["epochs_run"] == 3
    assert [p["phase"] for p in record["phases"]] == ["head", "fine-tune"]
    assert record["history"] == {"loss": [0.4]} and record["model"]["parameters"] == 100
    assert ImageSpec.from_record(record) == ImageSpec(8, 8, 3)
    assert len(record["schema_sha256"]) == 64 and record["training_data_sha256"] == "abc"
    assert {"tensorflow", "tfx", "tf-keras", "python"} <= set(record["library_versions"])
    json.dumps(record)
    optimizer = training.make_optimizer(fit, fit.learning_rate, fit.epochs, steps_per_epoch=10)
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["decay_steps"] == 20  # epochs x steps per epoch
    assert optimizer.get_config()["momentum"] == 0.9 and optimizer.get_config()["nesterov"]


def test_warm_up_then_cosine():
    import dataclasses
    fit = dataclasses.replace(training.FitSettings(), lr_schedule="cosine", warmup_epochs=2,
                              learning_rate=0.1, optimizer="sgd", weight_decay=5e-4)
    optimizer = training.make_optimizer(fit, 0.1, 10, steps_per_epoch=5)
    schedule = optimizer._learning_rate
    assert float(schedule(0)) == 0.0 and abs(float(schedule(10)) - 0.1) < 1e-6
    assert float(schedule(30)) < 0.1 and float(schedule(49)) < 0.01
    assert optimizer.get_config()["weight_decay"] == 5e-4


def test_training_data_fingerprint_changes_with_content(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"one")
    before = training.files_fingerprint([str(tmp_path / "*.gz")])
    (tmp_path / "a.gz").write_bytes(b"two")
    assert training.files_fingerprint([str(tmp_path / "*.gz")]) != before


def test_the_pixel_shortcut_is_read_from_the_transform_and_checked():
    """serving_default of a model trained on files skips the decode (pixels at
    the spec's size decode to themselves) and applies the transform graph's
    per-channel map, read back from it; a map that is not affine is refused."""
    import numpy as np
    import pytest
    import tensorflow as tf

    from imgpipe.components.trainer.signatures import pixel_map
    from imgpipe.contract import ImageSpec, image_ops

    spec = ImageSpec(8, 6, 3)
    mean, std = tf.constant([0.4, 0.5, 0.6]), tf.constant([0.2, 0.25, 0.3])

    def standardise(data):
        pixels = image_ops.decode_and_prepare_batch(data, spec)
        return (tf.cast(pixels, tf.float32) / 255.0 - mean) / std

    scale, offset = pixel_map(standardise, spec)
    np.testing.assert_allclose(scale.numpy(), 1 / (255 * std.numpy()), rtol=1e-5)
    np.testing.assert_allclose(offset.numpy(), -mean.numpy() / std.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="not a per-channel scale and offset"):
        pixel_map(lambda data: tf.sqrt(standardise(data) + 10.0), spec)


def test_training_stream_is_one_endless_iterator_of_full_batches():
    # 10 examples, batches of 4: an epoch is 3 steps; the stream never ends, so fit
    # keeps one iterator (and one filled shuffle buffer) across epochs.
    examples = tf.data.Dataset.from_tensor_slices(
        (tf.reshape(tf.range(10, dtype=tf.float32), [10, 1, 1, 1]), tf.one_hot(tf.range(10) % 2, 2)))
    fit = training.FitSettings(batch_size=4, shuffle_buffer=10, seed=0)
    stream = training.training_stream(examples, 4, fit, ImageSpec(1, 1, 1),
                                      training.AugmentationSettings(horizontal_flip=False, crop_padding=0))
    assert stream.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    seen = np.concatenate([pixels.numpy().ravel() for pixels, _ in stream.take(30)]).astype(int)
    assert seen.shape == (120,)            # full batches only
    passes = seen.reshape(12, 10)
    for one in passes:                     # every image once a pass
        assert sorted(one) == list(range(10))
    assert not np.array_equal(passes[0], np.arange(10))        # shuffled
    assert not np.array_equal(passes[0], passes[1])            # again each pass
