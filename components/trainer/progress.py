"""One console line per training epoch, as it ends.

Progress goes to the `imgpipe.progress` logger. A local run (`imgpipe run`,
where the Trainer executes in the CLI's own process) shows that logger's
records on the console even while every other library log goes to the run's
log file; on Kubeflow the records go to the pod's log like any other.

The line: `epoch 3/15  loss 0.4123  accuracy 0.851  val_loss 0.3990
val_accuracy 0.862  12.3s  best epoch 3 (val_accuracy 0.862)`. The best epoch
is the one early stopping keeps (lowest `val_loss`), the same one the training
record and the run's summary call best.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Mapping, Optional, Tuple

import tf_keras as keras

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.progress import LOGGER_NAME, logger, report  # noqa: F401 (re-exported)

# (log key, label, decimals), in the order they are shown.
_METRICS = (("loss", "loss", 4), ("accuracy", "accuracy", 3), ("val_loss", "val_loss", 4),
            ("val_accuracy", "val_accuracy", 3))


def _number(value, decimals: int) -> Optional[str]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)


class BestSoFar:
    """The best epoch so far by `monitor` (lower is better for losses)."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto"):
        if mode == "auto":
            mode = "min" if monitor.endswith("loss") else "max"
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min, max or auto, not {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.epoch: Optional[int] = None          # 1-based
        self.logs: dict = {}

    def update(self, epoch: int, logs: Mapping[str, float]) -> bool:
        """Records epoch `epoch` (1-based); True when it is the new best."""
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return False
        best = self.logs.get(self.monitor)
        better = best is None or (float(value) < best if self.mode == "min" else float(value) > best)
        if better:
            self.epoch = epoch
            self.logs = {key: float(v) for key, v in logs.items() if _number(v, 1) is not None}
        return better


def format_epoch(epoch: int, epochs: int, logs: Mapping[str, float], seconds: float,
                 best: Optional[Tuple[int, str, float]] = None) -> str:
    """`epoch n/N  loss ..  accuracy ..  val_loss ..  val_accuracy ..  12.3s  best epoch k (..)`.

    `epoch` is 1-based; metrics missing from `logs` are left out; `best` is
    (epoch, metric name, value) of the best epoch so far, or None.
    """
    parts = [f"epoch {epoch}/{epochs}"]
    for key, label, decimals in _METRICS:
        if key in logs and (text := _number(logs[key], decimals)) is not None:
            parts.append(f"{label} {text}")
    parts.append(f"{seconds:.1f}s")
    if best is not None:
        best_epoch, name, value = best
        parts.append(f"best epoch {best_epoch} ({name} {_number(value, 3)})")
    return "  ".join(parts)


class EpochProgress(keras.callbacks.Callback):
    """Logs `format_epoch(...)` to `imgpipe.progress` at the end of every epoch.

    `monitor` picks the best epoch (as EarlyStopping's `monitor` does); the
    line shows that epoch's `show` metric (its validation accuracy), or the
    monitored value when the logs have no `show`.
    """

    def __init__(self, monitor: str = "val_loss", show: str = "val_accuracy",
                 log: logging.Logger = logger, phase: str = ""):
        super().__init__()
        self.phase = phase          # a fine-tuned backbone trains in named phases
        self.monitor = monitor
        self.show = show
        self.log = log
        self.best = BestSoFar(monitor)
        self._started = 0.0

    def on_train_begin(self, logs=None):
        self.best = BestSoFar(self.monitor)

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.monotonic() - self._started
        self.best.update(epoch + 1, logs)
        best = None
        if self.best.epoch is not None:
            name = self.show if self.show in self.best.logs else self.monitor
            best = (self.best.epoch, name, self.best.logs[name])
        epochs = (self.params or {}).get("epochs") or epoch + 1
        line = format_epoch(epoch + 1, epochs, logs, seconds, best)
        self.log.info(f"[{self.phase}] {line}" if self.phase and self.phase != "train" else line)
