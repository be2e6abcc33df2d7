"""The serving-parity check: the exported model, called as a server calls it.

TFMA evaluates through `serving_examples` on the ingested tf.Examples. A
server sends the original encoded images to `serving_bytes` (or uint8
pixels to `serving_default` for array sources). If those paths disagree,
the served model is not the evaluated model, whatever TFMA says.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import List, Tuple

import numpy as np

from imgpipe.components.evaluation_gate.decisions import Parity
from imgpipe.contract import FEATURES, OUTPUTS, SIGNATURES, image_files

_BATCH = 64


def _eval_records(split_dir: str) -> List[bytes]:
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())


@dataclasses.dataclass
class ServingInputs:
    """The evaluation split as a server would receive it."""
    records: List[bytes]             # the tf.Examples (TFMA's path)
    labels: np.ndarray
    files: List[str]                 # the original encoded images, when they exist
    pixels: List[np.ndarray]         # else the uint8 pixels (array sources)

    @property
    def serving_path(self) -> str:
        return SIGNATURES.bytes if self.files else SIGNATURES.pixels


def load_inputs(split_dir: str, input_base: str, image_shape: Tuple[int, int, int]) -> ServingInputs:
    import tensorflow as tf
    records = _eval_records(split_dir)
    parsed = [tf.train.Example.FromString(r).features.feature for r in records]
    labels = np.array([p[FEATURES.label].int64_list.value[0] for p in parsed])
    source_ids = [p[FEATURES.source_id].bytes_list.value[0].decode() for p in parsed]
    files = [os.path.join(input_base, s) for s in source_ids]
    if all(image_files.is_candidate_image(f) and tf.io.gfile.exists(f) for f in files):
        return ServingInputs(records, labels, files, [])
    pixels = [np.array(p[FEATURES.image].int64_list.value, np.uint8).reshape(image_shape)
              for p in parsed]
    return ServingInputs(records, labels, [], pixels)


def served_class_ids(model, inputs: ServingInputs) -> np.ndarray:
    """Class ids from the serving signature, fed the original inputs."""
    return served_predictions(model, inputs)[0]


def served_predictions(model, inputs: ServingInputs):
    """(class ids, confidences) from the serving signature, fed the original inputs."""
    import tensorflow as tf
    served, confidence = [], []
    for start in range(0, len(inputs.records), _BATCH):
        batch = slice(start, start + _BATCH)
        if inputs.files:
            data = [tf.io.gfile.GFile(f, "rb").read() for f in inputs.files[batch]]
            outputs = model.signatures[SIGNATURES.bytes](**{SIGNATURES.bytes_input: tf.constant(data)})
        else:
            outputs = model.signatures[SIGNATURES.pixels](
                **{SIGNATURES.pixels_input: tf.constant(np.stack(inputs.pixels[batch]))})
        served.append(outputs[OUTPUTS.class_id].numpy())
        confidence.append(outputs[OUTPUTS.probabilities].numpy().max(axis=-1))
    if not served:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(served), np.concatenate(confidence)


def check(model_dir: str, inputs: ServingInputs, evaluated_accuracy: float) -> Parity:
    """The parity numbers, and the served predictions (the serving baseline)."""
    import tensorflow as tf
    model = tf.saved_model.load(model_dir)
    evaluated = [model.signatures[SIGNATURES.examples](
                     **{SIGNATURES.examples_input: tf.constant(inputs.records[start:start + _BATCH])}
                 )[OUTPUTS.class_id].numpy()
                 for start in range(0, len(inputs.records), _BATCH)]
    evaluated_ids = np.concatenate(evaluated)
    served_ids, confidences = served_predictions(model, inputs)
    return Parity(evaluated_accuracy=float(evaluated_accuracy),
                  served_accuracy=float((served_ids == inputs.labels).mean()),
                  disagreement=float((served_ids != evaluated_ids).mean()),
                  images=len(inputs.records), serving_path=inputs.serving_path,
                  served_class_ids=served_ids.tolist(), served_confidences=confidences.tolist())


def champion_accuracy(model_dir: str, inputs: ServingInputs) -> float:
    """The champion scored exactly as the candidate is: same inputs, same path."""
    import tensorflow as tf
    served_ids = served_class_ids(tf.saved_model.load(model_dir), inputs)
    return float((served_ids == inputs.labels).mean())
