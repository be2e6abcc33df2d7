"""imgpipe: a TFX pipeline for image classifiers.

Importing this package fixes the Keras flavour for the whole process. TFT 1.16
and TFMA 0.47 are built on tf_keras (Keras 2); mixing it with Keras 3 in one
process breaks model export, so every entry point (CLI, tests, benchmarks,
module files, container image) goes through here before TensorFlow loads.
"""

from imgpipe._environment import configure_environment as _configure_environment

_configure_environment()

__version__ = "0.1.0"

# imgpipe's artifact types by their TYPE_NAME. On Kubeflow, TFX's container
# entrypoint imports a custom artifact class from its schema title, which its
# compiler requires to be `<namespace>.<Title>`: so `imgpipe.IngestionReport`
# must be importable as exactly that. Resolved lazily (they import TFX).
_ARTIFACT_TYPES = {
    "IngestionReport": "imgpipe.components.image_example_gen.component",
    "ValidationReport": "imgpipe.components.validation_gate.component",
    "EvaluationReport": "imgpipe.components.evaluation_gate.component",
    "Champion": "imgpipe.components.champion_resolver.component",
}


def __getattr__(name):
    if name in _ARTIFACT_TYPES:
        import importlib
        return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module 'imgpipe' has no attribute {name!r}")
