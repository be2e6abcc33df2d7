"""Networks, input normalisation, user models, transfer learning and augmentation, without Beam."""
import importlib
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from imgpipe.components.trainer import augment, backbones, networks, transfer, user_model
from imgpipe.components.trainer.settings import AugmentationSettings, ModelSettings
from imgpipe.contract import ImageSpec
from imgpipe.contract.normalization import NORMALIZATIONS, normalization

SPEC = ImageSpec(32, 32, 3)


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_backbone_normalisation_is_keras_preprocess_input(name):
    """The row the exported graph applies equals the family's own preprocess_input."""
    backbone = backbones.BACKBONES[name]
    family = importlib.import_module(f"tf_keras.applications.{backbone.family}")
    pixels = np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3)).astype("float32")
    pixels[0] = 0.0
    pixels[1] = 255.0
    expected = family.preprocess_input(pixels.copy())
    graph = networks.Normalize(backbone.normalization)(tf.constant(pixels / 255.0))
    assert np.abs(graph.numpy() - expected).max() <= 1e-5


def test_the_normalisations_are_distinct_and_caffe_reorders_channels():
    red = np.zeros((1, 1, 1, 3), "float32")
    red[..., 0] = 1.0
    out = {name: row.apply(tf.constant(red)).numpy().ravel() for name, row in NORMALIZATIONS.items()}
    np.testing.assert_allclose(out["unit"], [1, 0, 0])
    np.testing.assert_allclose(out["tf"], [1, -1, -1])
    np.testing.assert_allclose(out["caffe"], [-103.939, -116.779, 255 - 123.68], rtol=1e-6)
    assert NORMALIZATIONS["unit"].is_identity_on_unit and not NORMALIZATIONS["tf"].is_identity_on_unit
    with pytest.raises(ValueError, match="known: unit, raw, tf, caffe, torch"):
        normalization("imagenet")


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet50"])
def test_a_backbone_model_starts_with_its_normalisation_and_has_the_new_head(name):
    classifier = networks.build_classifier(ModelSettings(architecture=name), SPEC, 5)
    model = classifier.model
    row = backbones.BACKBONES[name].normalization
    assert [layer.name for layer in model.layers][1] == f"normalize_{row}"
    assert [layer.name for layer in model.layers][-4:] == ["pool", "dropout", "logits", "probabilities"]
    assert classifier.backbone is not None and model.output_shape == (None, 5)


def test_a_backbone_refuses_another_normalisation():
    with pytest.raises(ValueError, match="resnet50 was trained on 'caffe' input"):
        networks.build_classifier(ModelSettings(architecture="resnet50", input_normalization="tf"),
                                  SPEC, 5)


def test_resnet_is_small_and_pooled():
    model = networks.build_classifier(ModelSettings(architecture="resnet"), SPEC, 10).model
    assert model.count_params() == 78_714          # ResNet-8: (16, 32, 64) x (1, 1, 1)
    assert "pool" in [layer.name for layer in model.layers]
    preset = {"widths": [16, 32, 80], "blocks": [2, 2, 1]}     # configs/cifar10.toml
    wider = networks.build_classifier(ModelSettings(architecture="resnet", model_args=preset), SPEC, 10).model
    assert 100_000 < wider.count_params() <= 150_000


def _user(tmp_path, body: str) -> ModelSettings:
    (tmp_path / "my_models.py").write_text(
        "import tf_keras as keras\n\n" + body)
    module = user_model.describe("my_models:build", tmp_path)
    return ModelSettings(architecture="my_models:build", user_module=module, model_args={"units": 8})


GOOD = '''
def build(image, num_classes, args):
    inputs = keras.Input(image.shape)
    x = keras.layers.Conv2D(args["units"], 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
'''


def test_a_user_model_is_wrapped_with_the_contract(tmp_path):
    settings = _user(tmp_path, GOOD)
    assert settings.user_module.sha256 and "def build" in settings.user_module.source
    classifier = networks.build_classifier(settings, SPEC, 4)
    model = classifier.model
    assert model.output_shape == (None, 4) and classifier.normalization.name == "unit"
    out = model(np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32")).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # It travels as text: the settings' JSON form carries it.
    assert json.loads(json.dumps(settings.user_module.__dict__))["function"] == "build"


@pytest.mark.parametrize("body, message", [
    (GOOD.replace("keras.Input(image.shape)", "keras.Input((64, 64, 3))"),
     r"takes input shape \(None, 64, 64, 3\); the image spec gives \(None, 32, 32, 3\)"),
    (GOOD.replace("inputs)\n", "keras.layers.Rescaling(1 / 255)(inputs))\n", 1),
     "rescales its input by 0.00392157, so the model expects 0..255 pixels"),
    (GOOD.replace('activation="softmax"', "activation=None"), "the outputs are not probabilities"),
    (GOOD.replace("num_classes, activation", "7, activation"), r"expected \(None, 4\)"),
    ("def build(image, num_classes, args):\n    return 3\n", "returned builtins.int, not a tf.keras"),
    ("def build(image, num_classes, args):\n    raise RuntimeError('no GPU')\n",
     "raised RuntimeError: no GPU"),
])
def test_a_user_model_that_breaks_the_contract_is_an_error_before_training(tmp_path, body, message):
    with pytest.raises(user_model.UserModelError, match=message):
        networks.build_classifier(_user(tmp_path, body), SPEC, 4)


def test_a_rescaling_user_model_is_accepted_when_it_says_it_takes_0_to_255(tmp_path):
    settings = _user(tmp_path, GOOD.replace("inputs)\n", "keras.layers.Rescaling(1 / 255)(inputs))\n", 1))
    import dataclasses
    raw = dataclasses.replace(settings, input_normalization="raw")
    assert networks.build_classifier(raw, SPEC, 4).normalization.name == "raw"


def test_user_model_references(tmp_path):
    with pytest.raises(user_model.UserModelError, match="neither a built-in model nor"):
        user_model.split_reference("my_models")
    with pytest.raises(user_model.UserModelError, match="no file nowhere/x.py .* no installed module"):
        user_model.describe("nowhere.x:build", tmp_path)
    installed = user_model.describe("json:loads", tmp_path)
    assert installed.source == "" and installed.module == "json"


def test_fine_tuning_unfreezes_exactly_the_top_layers_but_not_batch_norm():
    classifier = networks.build_classifier(ModelSettings(architecture="mobilenet_v2"), SPEC, 3)
    backbone = classifier.backbone
    transfer.freeze_backbone(backbone)
    head_only = transfer.trainable_parameters(classifier.model)
    assert head_only == 1280 * 3 + 3
    names = transfer.unfreeze_top(backbone, 10)
    top = backbone.layers[-10:]
    expected = [layer.name for layer in top if not isinstance(layer, keras.layers.BatchNormalization)]
    assert names == expected and len(expected) < 10          # the top 10 hold BN layers
    assert all(not layer.trainable for layer in backbone.layers[:-10])
    assert all(not layer.trainable for layer in backbone.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    assert transfer.trainable_parameters(classifier.model) > head_only


def test_starting_weights_from_a_file_whole_model_or_backbone(tmp_path):
    first = networks.build_classifier(ModelSettings(architecture="mobilenet_v3_small"), SPEC, 3)
    first.model.save_weights(str(tmp_path / "weights.h5"))
    first.backbone.save_weights(str(tmp_path / "backbone_weights.h5"))
    second = networks.build_classifier(ModelSettings(architecture="mobilenet_v3_small"), SPEC, 3)
    loaded = transfer.load_starting_weights(second.model, second.backbone, str(tmp_path / "weights.h5"))
    assert loaded["loaded_into"] == "model" and len(loaded["sha256"]) == 64
    for a, b in zip(first.model.get_weights(), second.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Another class count: the whole model does not fit, the backbone does.
    other = networks.build_classifier(ModelSettings(architecture="mobilenet_v3_small"), SPEC, 5)
    loaded = transfer.load_starting_weights(other.model, other.backbone,
                                            str(tmp_path / "backbone_weights.h5"))
    assert loaded["loaded_into"] == "backbone"
    np.testing.assert_array_equal(first.backbone.get_weights()[0], other.backbone.get_weights()[0])
    # Any tf.io.gfile location (gs://, s3://, ...): here TensorFlow's in-memory file system.
    tf.io.gfile.makedirs("ram://imgpipe-test")
    tf.io.gfile.copy(str(tmp_path / "weights.h5"), "ram://imgpipe-test/weights.h5", overwrite=True)
    remote = transfer.load_starting_weights(second.model, second.backbone, "ram://imgpipe-test/weights.h5")
    assert remote["sha256"] == backbones.sha256_of(str(tmp_path / "weights.h5"))
    with pytest.raises(transfer.WeightsError, match="no file"):
        transfer.load_starting_weights(other.model, None, str(tmp_path / "missing.h5"))
    cnn = networks.build_classifier(ModelSettings(), SPEC, 3)
    with pytest.raises(transfer.WeightsError, match="fits neither the model"):
        transfer.load_starting_weights(cnn.model, None, str(tmp_path / "weights.h5"))


def test_imagenet_weights_unreachable_say_what_to_download_and_where(tmp_path, monkeypatch):
    from tf_keras.src.utils import data_utils

    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure "
                        "in name resolution")

    monkeypatch.setattr(data_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(backbones.WeightsUnavailable) as caught:
        networks.build_classifier(ModelSettings(architecture="mobilenet_v2", weights="imagenet"),
                                  ImageSpec(96, 96, 3), 3)
    message = str(caught.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
    assert str(tmp_path / "keras" / "models") in message and "training.weights" in message


def test_imagenet_weights_from_the_keras_cache_are_hashed(tmp_path, monkeypatch):
    """Where the file is in Keras' cache (a machine that downloaded it), no network is needed."""
    cache = tmp_path / "keras" / "models"
    cache.mkdir(parents=True)
    source = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from tf_keras.src.utils import data_utils
    saved = {}

    def cached(fname, origin=None, cache_subdir="datasets", **kwargs):
        path = cache / fname
        if not path.exists():
            source.save_weights(str(path))
        saved["path"] = path
        return str(path)

    monkeypatch.setattr(data_utils, "get_file", cached)
    classifier = networks.build_classifier(
        ModelSettings(architecture="mobilenet_v3_small", weights="imagenet"), SPEC, 3)
    assert classifier.imagenet_sha256 == backbones.sha256_of(str(saved["path"]))
    np.testing.assert_array_equal(classifier.backbone.get_weights()[0], source.get_weights()[0])


def test_augmentation_changes_training_images_only_as_configured():
    images = tf.random.stateless_uniform([8, 16, 16, 3], seed=[3, 4])
    assert augment.make_augment(AugmentationSettings(horizontal_flip=False)) is None
    cut = augment.cutout(tf.ones([8, 16, 16, 3]), 4).numpy()
    assert all(int((cut[i, ..., 0] == 0).sum()) in range(1, 17) for i in range(8))
    run = augment.make_augment(AugmentationSettings(crop_padding=2, cutout=4, translation=0.1))
    outputs = [run(images).numpy() for _ in range(4)]
    assert all(o.shape == (8, 16, 16, 3) for o in outputs)
    assert any(np.abs(o - images.numpy()).max() > 0 for o in outputs)


def test_batch_crop_and_flip_give_each_image_its_own_draw():
    """Each image of a batch is a window of its reflect-padded self at its own
    offset (all 2p+1 offsets reachable), mirrored or not on its own."""
    padding, base = 2, np.arange(6 * 6, dtype=np.float32).reshape(1, 6, 6, 1)
    images = tf.constant(np.repeat(base, 256, axis=0))
    padded = np.pad(base[0], [[padding, padding], [padding, padding], [0, 0]], mode="reflect")
    windows = {(top, left): padded[top:top + 6, left:left + 6]
               for top in range(2 * padding + 1) for left in range(2 * padding + 1)}
    cropped = augment.pad_and_crop(images, padding).numpy()
    seen = {next(key for key, window in windows.items() if np.array_equal(window, image))
            for image in cropped}
    assert len(seen) == len(windows)
    flipped = augment.flip_left_right(images).numpy()
    mirrored = [np.array_equal(image, base[0, :, ::-1]) for image in flipped]
    assert all(m or np.array_equal(image, base[0]) for m, image in zip(mirrored, flipped))
    assert 64 < sum(mirrored) < 192


def test_fine_tuning_phases_restore_each_phase_best_weights(monkeypatch, tmp_path):
    """Phase 1 (head, backbone frozen) and phase 2 (top layers, lower rate) each end
    on their lowest val_loss epoch; BN layers stay frozen throughout."""
    from imgpipe.components.trainer import training
    from imgpipe.components.trainer.settings import FitSettings, TrainerSettings
    settings = TrainerSettings(
        class_names=["a", "b", "c"], image=SPEC,
        model=ModelSettings(architecture="mobilenet_v3_small", dropout=0.0, weights="start.h5"),
        fit=FitSettings(epochs=4, batch_size=16, learning_rate=0.05, optimizer="sgd",
                        early_stopping_patience=10, fine_tune_layers=12, fine_tune_epochs=4,
                        fine_tune_lr_factor=0.1))
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(48, 32, 32, 3)).astype("float32")
    labels = tf.one_hot(rng.integers(0, 3, 48), 3)
    train = tf.data.Dataset.from_tensor_slices((images, labels))   # _fit batches it (3 a pass)
    # Validation disagrees with training: its loss is not monotone.
    validation = tf.data.Dataset.from_tensor_slices((images, tf.roll(labels, 1, axis=1))).batch(16)
    snapshots, starts = [], []

    class Recorder(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            starts.append([w.copy() for w in self.model.get_weights()])
            snapshots.append([])

        def on_epoch_end(self, epoch, logs=None):
            snapshots[-1].append(([w.copy() for w in self.model.get_weights()], logs["val_loss"]))

    made = training.make_callbacks
    monkeypatch.setattr(training, "make_callbacks", lambda *a, **k: [Recorder(), *made(*a, **k)])
    import dataclasses  # the phases follow from a pretrained start; these weights stay random
    classifier = networks.build_classifier(dataclasses.replace(settings.model, weights="none"), SPEC, 3)
    phases = training._fit(settings, classifier, train, validation, str(tmp_path))
    assert [p["phase"] for p in phases] == ["head", "fine-tune"]
    untrained = TrainerSettings(class_names=["a", "b", "c"], image=SPEC,
                                model=dataclasses.replace(settings.model, weights="none"))
    assert [p["phase"] for p in training._phases(untrained, classifier)] == ["train"]
    scratch = networks.build_classifier(untrained.model, SPEC, 3)
    [whole] = training._fit(untrained.model_copy(update={"fit": FitSettings(epochs=1, batch_size=16)}),
                            scratch, train, validation, str(tmp_path / "scratch"))
    assert whole["trainable_parameters"] == transfer.trainable_parameters(scratch.model) > 900_000
    assert phases[1]["learning_rate"] == pytest.approx(0.005)
    assert phases[0]["trainable_parameters"] < phases[1]["trainable_parameters"]
    # The data make some best epoch not the last, so restoring is visible.
    assert any(p["best_epoch"] < p["epochs_run"] for p in phases)
    for index, phase in enumerate(phases):
        best = min(range(len(snapshots[index])), key=lambda i: snapshots[index][i][1])
        assert phase["best_epoch"] == best + 1
        restored = starts[1] if index == 0 else classifier.model.get_weights()
        for got, kept in zip(restored, snapshots[index][best][0]):
            np.testing.assert_array_equal(got, kept)
    assert all(not layer.trainable for layer in classifier.backbone.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def test_mixed_precision_computes_in_float16_outputs_float32_and_says_so_on_a_cpu(caplog):
    import logging

    from imgpipe.components.trainer import training
    with caplog.at_level(logging.INFO, logger="imgpipe.progress"), training.precision_policy(True):
        model = networks.build_classifier(ModelSettings(architecture="resnet"), SPEC, 3).model
    assert keras.mixed_precision.global_policy().name == "float32"     # restored afterwards
    assert model.get_layer("stem").compute_dtype == "float16"
    assert model.get_layer("stem").kernel.dtype == tf.float32           # variables stay float32
    assert model(tf.zeros([1, 32, 32, 3])).dtype == tf.float32
    if not tf.config.list_physical_devices("GPU"):
        assert "no GPU here" in caplog.text
