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
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from imgpipe.components.evaluation_gate.decisions import Parity
from imgpipe.contract import FEATURES, OUTPUTS, SIGNATURES, image_files

_BATCH = 64


def _record_batches(split_dir: str) -> Iterator[List[bytes]]:
    """The split's serialized tf.Examples, _BATCH at a time (never all at once:
    a 224x224 photo is about 140 KB serialized, 1.2 MB parsed)."""
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_BATCH):
        yield list(batch.numpy())


@dataclasses.dataclass
class ServingInputs:
    """The evaluation split as a server would receive it, read a batch at a time."""
    split_dir: str                   # the tf.Examples (TFMA's path)
    labels: np.ndarray
    files: List[str]                 # the original encoded images, when they exist
    image_shape: Tuple[int, int, int]

    @property
    def serving_path(self) -> str:
        return SIGNATURES.bytes if self.files else SIGNATURES.pixels

    def record_batches(self) -> Iterator[List[bytes]]:
        return _record_batches(self.split_dir)

    def served_batches(self) -> Iterator[Dict]:
        """The serving signature's keyword arguments, a batch at a time: the
        original files' bytes, else the records' uint8 pixels (array sources)."""
        import tensorflow as tf
        if self.files:
            for start in range(0, len(self.files), _BATCH):
                data = [tf.io.gfile.GFile(f, "rb").read() for f in self.files[start:start + _BATCH]]
                yield {SIGNATURES.bytes_input: tf.constant(data)}
            return
        spec = {FEATURES.image: tf.io.FixedLenFeature([int(np.prod(self.image_shape))], tf.int64)}
        for records in self.record_batches():
            pixels = tf.io.parse_example(records, spec)[FEATURES.image]
            yield {SIGNATURES.pixels_input: tf.cast(tf.reshape(pixels, [-1, *self.image_shape]),
                                                    tf.uint8)}


def load_inputs(split_dir: str, input_base: str, image_shape: Tuple[int, int, int]) -> ServingInputs:
    import tensorflow as tf
    spec = {FEATURES.label: tf.io.FixedLenFeature([1], tf.int64),
            FEATURES.source_id: tf.io.FixedLenFeature([1], tf.string)}
    labels, source_ids = [], []
    for records in _record_batches(split_dir):
        parsed = tf.io.parse_example(records, spec)
        labels += parsed[FEATURES.label].numpy()[:, 0].tolist()
        source_ids += [s.decode() for s in parsed[FEATURES.source_id].numpy()[:, 0]]
    files = [os.path.join(input_base, s) for s in source_ids]
    originals = all(image_files.is_candidate_image(f) and tf.io.gfile.exists(f) for f in files)
    return ServingInputs(split_dir, np.array(labels, np.int64), files if originals else [],
                         tuple(image_shape))


def served_class_ids(model, inputs: ServingInputs) -> np.ndarray:
    """Class ids from the serving signature, fed the original inputs."""
    return served_predictions(model, inputs)[0]


def served_predictions(model, inputs: ServingInputs, keep: Optional[np.ndarray] = None):
    """(class ids, confidences, probabilities) from the serving signature, fed the
    original inputs; the probabilities only of the inputs at `keep`, in that
    order (None without `keep`): what a sample needs, not the split's."""
    signature = model.signatures[inputs.serving_path]
    served, confidence, kept, start = [], [], {}, 0
    wanted = set() if keep is None else {int(i) for i in keep}
    for arguments in inputs.served_batches():
        outputs = signature(**arguments)
        probabilities = outputs[OUTPUTS.probabilities].numpy()
        served.append(outputs[OUTPUTS.class_id].numpy())
        confidence.append(probabilities.max(axis=-1))
        kept.update((start + i, probabilities[i]) for i in range(len(probabilities))
                    if start + i in wanted)
        start += len(probabilities)
    kept_probabilities = None if keep is None else np.array([kept[int(i)] for i in keep])
    if not served:
        return np.zeros(0, np.int64), np.zeros(0, np.float32), kept_probabilities
    return np.concatenate(served), np.concatenate(confidence), kept_probabilities


def check(model_dir, inputs: ServingInputs, evaluated_accuracy: float,
          keep: Optional[np.ndarray] = None) -> Parity:
    """The parity numbers, and the served predictions (the serving baseline; the
    probabilities of the inputs at `keep`, for the fuzzer).
    `model_dir`: the SavedModel's folder, or the SavedModel already loaded."""
    import tensorflow as tf
    model = tf.saved_model.load(model_dir) if isinstance(model_dir, str) else model_dir
    evaluated = [model.signatures[SIGNATURES.examples](
                     **{SIGNATURES.examples_input: tf.constant(records)})[OUTPUTS.class_id].numpy()
                 for records in inputs.record_batches()]
    evaluated_ids = np.concatenate(evaluated) if evaluated else np.zeros(0, np.int64)
    served_ids, confidences, probabilities = served_predictions(model, inputs, keep)
    return Parity(evaluated_accuracy=float(evaluated_accuracy),
                  served_accuracy=float((served_ids == inputs.labels).mean()),
                  disagreement=float((served_ids != evaluated_ids).mean()),
                  images=len(inputs.labels), serving_path=inputs.serving_path,
                  served_class_ids=served_ids.tolist(), served_confidences=confidences.tolist(),
                  served_probabilities=probabilities)


def champion_class_ids(model_dir: str, inputs: ServingInputs) -> np.ndarray:
    """The champion's answers, served exactly as the candidate's: same inputs, same path."""
    import tensorflow as tf
    return served_class_ids(tf.saved_model.load(model_dir), inputs)
