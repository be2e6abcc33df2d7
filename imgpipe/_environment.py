"""Process-wide settings that must be in place before TensorFlow is imported."""
import os
import sys

LEGACY_KERAS = "1"


def configure_environment() -> None:
    current = os.environ.get("TF_USE_LEGACY_KERAS")
    if current is not None and current != LEGACY_KERAS:
        raise RuntimeError(
            f"TF_USE_LEGACY_KERAS={current!r} is set, but imgpipe runs on tf_keras "
            "(TF_USE_LEGACY_KERAS=1) because TFT 1.16 and TFMA 0.47 use it; unset it.")
    if "tensorflow" in sys.modules and current is None:
        raise RuntimeError(
            "TensorFlow was imported before imgpipe; import imgpipe first so that "
            "TF_USE_LEGACY_KERAS=1 is set before TensorFlow chooses its Keras.")
    os.environ["TF_USE_LEGACY_KERAS"] = LEGACY_KERAS
