"""A model the user brings: `training.model = "my_models:build"`.

The function is called as `build(image, num_classes, args)` with the
`ImageSpec`, the class count and the `[training.model_args]` table, and
returns an uncompiled tf.keras model taking float32 pixels [H, W, C] in the
range of its input normalisation ([0, 1] unless `training.input_normalization`
says otherwise) and returning class probabilities. imgpipe puts decoding,
resizing and that normalisation in front of it in the exported graph, and
checks here, before training, that the model fits that contract.

A module that is a file of the user's project travels with the pipeline as
its source text (in the Trainer's parameters, hashed into TFX's cache key and
carried by a compiled Kubeflow pipeline); an installed module is imported by
name.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Callable, Optional, Tuple

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)


class UserModelError(ValueError):
    """The user's model function or what it returned breaks the contract."""


@dataclasses.dataclass(frozen=True)
class UserModule:
    reference: str        # "my_models:build" (a project file's stem) or "pkg.models:build"
    module: str           # module name
    function: str
    source: str = ""      # the file's text for project files; "" for installed modules
    sha256: str = ""      # of source ("" for installed modules)


def split_reference(reference: str) -> Tuple[str, str]:
    module, sep, function = reference.rpartition(":")
    if not sep or not module or not function.isidentifier():
        raise UserModelError(f"training.model {reference!r} is neither a built-in model nor "
                             "'module:function' (e.g. 'my_models:build')")
    return module, function


def module_file(reference: str, base: Path) -> Optional[Path]:
    """The project file a reference names ('pkg.mod:f' -> base/pkg/mod.py; or a .py path)."""
    module, _ = split_reference(reference)
    candidate = Path(module) if module.endswith(".py") else Path(*module.split(".")).with_suffix(".py")
    path = candidate if candidate.is_absolute() else base / candidate
    return path if path.is_file() else None


def describe(reference: str, base: Path) -> UserModule:
    """What the Trainer needs to load the function (read here, where the project is)."""
    module, function = split_reference(reference)
    path = module_file(reference, base)
    if path is not None:
        source = path.read_text(encoding="utf-8")
        # Named by module and function only: no path of this machine travels on.
        return UserModule(reference=f"{path.stem}:{function}", module=path.stem, function=function,
                          source=source,
                          sha256=hashlib.sha256(source.encode()).hexdigest())
    if importlib.util.find_spec(module.split(".")[0]) is None:
        raise UserModelError(f"training.model {reference!r}: no file {module.replace('.', '/')}.py "
                             f"under {base} and no installed module {module!r}")
    return UserModule(reference=reference, module=module, function=function)


def load_function(user: UserModule) -> Callable:
    if user.source:
        module = types.ModuleType(user.module)
        module.__file__ = f"<training.model {user.reference}>"
        sys.modules[user.module] = module  # so that tracing and pickling find it
        try:
            exec(compile(user.source, module.__file__, "exec"), module.__dict__)  # noqa: S102
        except Exception as error:
            raise UserModelError(f"training.model {user.reference}: the module failed to import: "
                                 f"{type(error).__name__}: {error}") from None
    else:
        module = importlib.import_module(user.module)
    function = getattr(module, user.function, None)
    if not callable(function):
        raise UserModelError(f"training.model {user.reference}: module {user.module!r} has no "
                             f"function {user.function!r}")
    return function


def check_model(model, reference: str, image_shape, num_classes: int, unit_input: bool) -> None:
    """Shape, outputs and input range of a user's model, before any training."""
    import tf_keras as keras
    if not isinstance(model, keras.Model):
        kind = f"{type(model).__module__}.{type(model).__name__}"
        hint = (" (a Keras 3 model: imgpipe's Trainer runs tf.keras 2.16; build it with "
                "`import tf_keras as keras` or `tf.keras`)" if kind.startswith("keras.") else "")
        raise UserModelError(f"training.model {reference} returned {kind}, not a tf.keras Model{hint}")
    if len(model.inputs) != 1:
        raise UserModelError(f"training.model {reference}: the model has {len(model.inputs)} "
                             "inputs; it must take one image tensor")
    expected = (None, *image_shape)
    got = tuple(model.inputs[0].shape)
    if len(got) != len(expected) or any(g not in (None, e) for g, e in zip(got[1:], expected[1:])):
        raise UserModelError(f"training.model {reference}: the model takes input shape {got}; the "
                             f"image spec gives {expected} ([image] height, width, channels)")
    outputs = tuple(model.outputs[0].shape)
    if len(model.outputs) != 1 or outputs[-1] != num_classes:
        raise UserModelError(f"training.model {reference}: the model returns {outputs}; expected "
                             f"(None, {num_classes}), one probability per class")
    _check_probabilities(model, reference, image_shape)
    if unit_input:
        _check_no_rescaling(model, reference)


def _check_probabilities(model, reference: str, image_shape) -> None:
    import numpy as np
    probe = np.random.default_rng(0).uniform(0, 1, (2, *image_shape)).astype("float32")
    out = np.asarray(model(probe, training=False), dtype="float64")
    if out.min() < -1e-6 or out.max() > 1 + 1e-6 or np.abs(out.sum(axis=-1) - 1).max() > 1e-3:
        raise UserModelError(f"training.model {reference}: the outputs are not probabilities "
                             f"(range {out.min():.3g}..{out.max():.3g}, rows sum to "
                             f"{out.sum(axis=-1).min():.3g}..{out.sum(axis=-1).max():.3g}); "
                             "end the model with a softmax")


def _leading_layers(model):
    """Layers before the first one with weights (conv/dense), nested models included."""
    import tf_keras as keras
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leading_layers(layer)
            return
        if layer.weights and not isinstance(layer, keras.layers.Normalization):
            return
        yield layer


def _check_no_rescaling(model, reference: str) -> None:
    import numpy as np
    import tf_keras as keras
    for layer in _leading_layers(model):
        scale = float(np.max(np.abs(np.ravel(getattr(layer, "scale", 1.0)))))
        if isinstance(layer, keras.layers.Rescaling) and scale < 0.1:
            raise UserModelError(
                f"training.model {reference}: layer {layer.name!r} rescales its input by "
                f"{scale:.6g}, so the model expects 0..255 pixels, but it is fed [0, 1] "
                "(the exported graph already scales them): remove that layer, or set "
                "training.input_normalization = \"raw\" to feed it 0..255")
        if isinstance(layer, keras.layers.Normalization):
            raise UserModelError(
                f"training.model {reference}: layer {layer.name!r} normalises the input inside the "
                "model; imgpipe applies the input normalisation in the exported graph: remove it and "
                "set training.input_normalization, or training.standardize = true")
