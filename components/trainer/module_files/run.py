"""Trainer module file: run_fn (the logic lives in imgpipe)."""
import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer import training


def run_fn(fn_args):
    training.run(fn_args)
