"""imgpipe: a TFX pipeline for image classifiers.

Importing this package fixes the Keras flavour for the whole process. TFT 1.16
and TFMA 0.47 are built on tf_keras (Keras 2); mixing it with Keras 3 in one
process breaks model export, so every entry point (CLI, tests, benchmarks,
module files, container image) goes through here before TensorFlow loads.
"""

from imgpipe._environment import configure_environment as _configure_environment

_configure_environment()

__version__ = "0.1.0"
