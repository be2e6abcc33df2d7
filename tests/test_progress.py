"""The Trainer's per-epoch progress line (no Beam, no TFX)."""
import logging
import re

import numpy as np
import pytest
import tf_keras as keras

from imgpipe.components.trainer import progress, training
from imgpipe.components.trainer.settings import FitSettings


def test_the_line_has_epoch_metrics_seconds_and_best():
    logs = {"loss": 0.41234, "accuracy": 0.85123, "val_loss": 0.39901, "val_accuracy": 0.8623}
    line = progress.format_epoch(3, 15, logs, 12.34, best=(2, "val_accuracy", 0.87))
    assert line == ("epoch 3/15  loss 0.4123  accuracy 0.851  val_loss 0.3990  "
                    "val_accuracy 0.862  12.3s  best epoch 2 (val_accuracy 0.870)")


def test_missing_metrics_are_left_out():
    line = progress.format_epoch(1, 2, {"loss": float("nan"), "lr": 0.1}, 0.04)
    assert line == "epoch 1/2  loss nan  0.0s"


def test_best_so_far_follows_the_monitor():
    by_loss = progress.BestSoFar("val_loss")
    assert by_loss.mode == "min"
    assert by_loss.update(1, {"val_loss": 0.5, "val_accuracy": 0.6}) is True
    assert by_loss.update(2, {"val_loss": 0.4, "val_accuracy": 0.55}) is True
    assert by_loss.update(3, {"val_loss": 0.45, "val_accuracy": 0.9}) is False
    assert by_loss.update(4, {"loss": 0.1}) is False          # no validation value
    assert by_loss.update(5, {"val_loss": float("nan")}) is False
    assert (by_loss.epoch, by_loss.logs["val_accuracy"]) == (2, 0.55)

    by_accuracy = progress.BestSoFar("val_accuracy")
    assert by_accuracy.mode == "max"
    for epoch, value in enumerate([0.5, 0.7, 0.6], start=1):
        by_accuracy.update(epoch, {"val_accuracy": value})
    assert (by_accuracy.epoch, by_accuracy.logs["val_accuracy"]) == (2, 0.7)
    with pytest.raises(ValueError):
        progress.BestSoFar("loss", mode="lowest")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def progress_records():
    handler = _Records()
    logger = logging.getLogger(progress.LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


LINE = re.compile(r"^epoch (\d)/3  loss (\S+)  accuracy (\S+)  val_loss (\S+)  "
                  r"val_accuracy (\S+)  (\d+\.\d)s  best epoch (\d) \(val_accuracy (\S+)\)$")


def test_a_real_fit_logs_one_line_per_epoch_with_the_best_so_far(progress_records):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(2, activation="softmax", input_shape=(4,))])
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    fit = FitSettings(epochs=3, early_stopping_patience=5)
    history = model.fit(x, y, validation_data=(x[:16], y[:16]), epochs=fit.epochs, verbose=0,
                        callbacks=training.make_callbacks(fit))

    assert len(progress_records) == 3, progress_records
    matches = [LINE.match(line) for line in progress_records]
    assert all(matches), progress_records
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    val_losses = history.history["val_loss"]
    for n, match in enumerate(matches, start=1):
        assert float(match.group(2)) == pytest.approx(history.history["loss"][n - 1], abs=1e-4)
        assert float(match.group(5)) == pytest.approx(history.history["val_accuracy"][n - 1],
                                                      abs=1e-3)
        # Best so far: the lowest val_loss up to this epoch (what early stopping keeps).
        best = int(np.argmin(val_losses[:n])) + 1
        assert int(match.group(7)) == best
        assert float(match.group(8)) == pytest.approx(history.history["val_accuracy"][best - 1],
                                                      abs=1e-3)
