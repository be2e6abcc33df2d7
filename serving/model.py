"""The served model: resolved through the registry, called through its serving signatures.

Inputs are checked before TensorFlow sees them, with errors that say what was
expected: encoded images must be an allowed format within the size limits;
arrays must be uint8 pixels of the model's shape (the model scales inside its
graph; a float array is the classic pre-scaled-twice mistake).
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from imgpipe.contract import OUTPUTS, SIGNATURES, ImageSpec, image_files
from imgpipe.registry import store

# One input as the model takes it: encoded image bytes or uint8 pixels [h, w, c].
ModelInput = Union[bytes, np.ndarray]


class InputRejected(ValueError):
    """One bad input: the HTTP status to answer with and what was expected."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def __reduce__(self):   # raised in a parsing process, re-raised here: keep the status
        return type(self), (self.status, str(self))


@dataclasses.dataclass(frozen=True)
class Limits:
    max_image_side: int = 4096
    allowed_formats: Tuple[str, ...] = ("JPEG", "PNG")
    # Decoding cost grows with pixels, not bytes: a small PNG can be 4096x4096.
    max_pixels_per_request: int = 4096 * 4096


@dataclasses.dataclass
class Prediction:
    class_name: str
    class_id: int
    confidence: float
    top_k: List[Tuple[str, float]]
    probabilities: List[float]

    def as_dict(self) -> Dict[str, Any]:
        return {"class": self.class_name, "class_id": self.class_id, "confidence": self.confidence,
                "top_k": [{"class": c, "probability": p} for c, p in self.top_k],
                "probabilities": self.probabilities}


def input_hash(item: ModelInput) -> str:
    """sha256 of the encoded bytes, or of the pixel buffer of an array."""
    data = item if isinstance(item, bytes) else np.ascontiguousarray(item).tobytes()
    return hashlib.sha256(data).hexdigest()


def check_image_bytes(data: bytes, limits: Limits, what: str = "image") -> int:
    """Format, size and readability from the header, before any decoding: the pixel count."""
    try:
        info = image_files.probe_image(data, max_pixels=limits.max_image_side ** 2)
    except image_files.BadInput as error:
        message = str(error)
        too_large = "above the limit" in message or "decompression bomb" in message
        status = 413 if too_large else 415 if "not supported" in message else 400
        raise InputRejected(status, f"{what}: {message}") from None
    if info.format not in limits.allowed_formats:
        raise InputRejected(415, f"{what}: format {info.format} is not accepted; expected "
                                 f"{' or '.join(limits.allowed_formats)}")
    if max(info.width, info.height) > limits.max_image_side:
        raise InputRejected(413, f"{what}: {info.width}x{info.height} is larger than the "
                                 f"{limits.max_image_side}-pixel side limit")
    return info.width * info.height


def check_pixels(array: np.ndarray, image_shape: Sequence[int], what: str = "instances") -> np.ndarray:
    """A uint8 batch [n, h, w, c] of the model's shape, or a clear refusal."""
    if array.dtype.kind == "f":
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        raise InputRejected(422, (
            f"{what}: got {array.dtype} pixels in [{low:g}, {high:g}]; expected uint8 pixels in "
            "[0, 255] (the model scales them inside its graph — send the original image bytes or "
            "unscaled uint8 arrays)"))
    if array.dtype.kind == "b":   # true/false would pass as 0/1 pixels
        raise InputRejected(422, f"{what}: got boolean values; expected uint8 pixels in [0, 255]")
    if array.dtype.kind not in "iu":
        raise InputRejected(422, f"{what}: got {array.dtype} values; expected uint8 pixels")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise InputRejected(422, f"{what}: pixel values in [{array.min()}, {array.max()}]; "
                                 "expected uint8 pixels in [0, 255]")
    if array.size and array.max() == 1:
        raise InputRejected(422, f"{what}: every pixel value is 0 or 1; expected uint8 pixels in "
                                 "[0, 255] (pixels scaled to [0, 1] and cast to integers lose the "
                                 "image — send the original image bytes or unscaled uint8 arrays)")
    expected = tuple(image_shape)
    if array.ndim == 3:
        array = array[np.newaxis]
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise InputRejected(422, f"{what}: got shape {list(array.shape)}; expected "
                                 f"[n, {', '.join(map(str, expected))}] uint8 pixels "
                                 "(or send encoded images, which are resized in the graph)")
    return array.astype(np.uint8)


def check_one_image(array: np.ndarray, image_shape: Sequence[int], what: str = "instance") -> np.ndarray:
    """Exactly one uint8 image [h, w, c] of the model's shape: a batch inside one
    instance would otherwise be cut to its first image."""
    expected = tuple(image_shape)
    if tuple(array.shape) != expected:
        raise InputRejected(422, f"{what}: got shape {list(array.shape)}; an instance is exactly "
                                 f"one image, uint8 pixels [{', '.join(map(str, expected))}] (send "
                                 "more images as more instances, or encoded images, which are "
                                 "resized in the graph)")
    return check_pixels(array, image_shape, what)[0]


@dataclasses.dataclass
class ServedModel:
    name: str
    version: int
    uid: str
    path: str
    class_names: List[str]
    image: ImageSpec
    serving_baseline: Optional[Dict[str, Any]]
    statistics_path: Optional[str]
    module: Any = dataclasses.field(repr=False, default=None)
    contract: Optional[Dict[str, Any]] = None     # contract/preprocessing.py; None: older exports

    @property
    def image_shape(self) -> Tuple[int, int, int]:
        return self.image.shape

    def probabilities_from_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        import tensorflow as tf
        outputs = self.module.signatures[SIGNATURES.bytes](
            **{SIGNATURES.bytes_input: tf.constant(list(images), dtype=tf.string)})
        return outputs[OUTPUTS.probabilities].numpy()

    def probabilities_from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        import tensorflow as tf
        outputs = self.module.signatures[SIGNATURES.pixels](
            **{SIGNATURES.pixels_input: tf.constant(pixels)})
        return outputs[OUTPUTS.probabilities].numpy()

    def probabilities(self, inputs: Sequence[ModelInput]) -> np.ndarray:
        """One call per signature for a batch mixing encoded images and pixel arrays."""
        out = np.zeros((len(inputs), len(self.class_names)), np.float32)
        encoded = [i for i, item in enumerate(inputs) if isinstance(item, bytes)]
        arrays = [i for i, item in enumerate(inputs) if not isinstance(item, bytes)]
        if encoded:
            out[encoded] = self.probabilities_from_bytes([inputs[i] for i in encoded])
        if arrays:
            out[arrays] = self.probabilities_from_pixels(np.stack([inputs[i] for i in arrays]))
        return out

    def predict_each(self, inputs: Sequence[ModelInput], top_k: int
                     ) -> List[Union[Prediction, InputRejected]]:
        """Predictions in input order; an input that passed the header checks
        but not TensorFlow's decoder gets an InputRejected, the others still
        get their predictions."""
        try:
            return self.predictions(self.probabilities(inputs), top_k)
        except Exception:  # noqa: BLE001 - find the bad input(s) one by one
            results: List[Union[Prediction, InputRejected]] = []
            for item in inputs:
                try:
                    results.append(self.predictions(self.probabilities([item]), top_k)[0])
                except Exception as failure:  # noqa: BLE001
                    results.append(InputRejected(
                        400, f"the image could not be decoded ({type(failure).__name__}); "
                             "expected a complete JPEG or PNG file"))
            return results

    def predictions(self, probabilities: np.ndarray, top_k: int) -> List[Prediction]:
        out = []
        for row in probabilities:
            order = np.argsort(-row)[:top_k]
            best = int(order[0])
            out.append(Prediction(self.class_names[best], best, float(row[best]),
                                  [(self.class_names[i], float(row[i])) for i in order],
                                  [float(v) for v in row]))
        return out


def resolve(registry_url: str, model_name: str, version: Optional[int] = None,
            uid: Optional[str] = None):
    """The registry row to serve: the champion unless a version or uid is named."""
    engine = store.require_schema(registry_url)
    if uid is not None:
        row = store.get(engine, uid)
        if row.model_name != model_name:
            raise store.RegistryError(f"{uid} is a version of {row.model_name!r}, not {model_name!r}")
        return row
    if version is not None:
        return store.version_of(engine, model_name, version)
    row = store.champion(engine, model_name)
    if row is None:
        raise store.RegistryError(f"model {model_name!r} has no champion in the registry at "
                                  f"{store.mask_url(registry_url)}; push one with `imgpipe run` "
                                  "or name --version/--uid")
    return row


def load(row, serving_root: Optional[str] = None) -> ServedModel:
    """The row's SavedModel; found under `serving_root` when runs/ was restored elsewhere."""
    import tensorflow as tf

    from imgpipe.registry import publish
    path = publish.artifact_dir(row, serving_root)
    try:
        module = tf.saved_model.load(path)
    except Exception as error:  # noqa: BLE001 - reported with the path
        raise store.RegistryError(f"{row.model_uid}: cannot load its SavedModel at "
                                  f"{path} ({type(error).__name__})") from None
    config = row.training_config
    return ServedModel(name=row.model_name, version=row.version, uid=row.model_uid,
                       path=path, class_names=list(config["class_names"]),
                       image=ImageSpec.from_record(config),
                       serving_baseline=row.serving_baseline, statistics_path=row.statistics_path,
                       module=module, contract=row.preprocessing_contract)
