"""The serving-parity check: the exported model, called as a server calls it.

TFMA evaluates through `serving_examples` on the ingested tf.Examples. A
server sends the original encoded images to `serving_bytes` (or uint8
pixels to `serving_default` for array sources). If those paths disagree,
the served model is not the evaluated model, whatever TFMA says.
"""
from __future__ import annotations

import glob
import os
from typing import List, Tuple

import numpy as np

from imgpipe.components.evaluation_gate.decisions import Parity
from imgpipe.components.image_example_gen import encoding
from imgpipe.components.trainer import signatures

_BATCH = 64


def _eval_records(split_dir: str) -> List[bytes]:
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())


def check(model_dir: str, split_dir: str, input_base: str, evaluated_accuracy: float,
          image_shape: Tuple[int, int, int]) -> Parity:
    import tensorflow as tf
    model = tf.saved_model.load(model_dir)
    records = _eval_records(split_dir)
    parsed = [tf.train.Example.FromString(r).features.feature for r in records]
    labels = np.array([p[encoding.LABEL_FEATURE].int64_list.value[0] for p in parsed])
    source_ids = [p[encoding.SOURCE_ID_FEATURE].bytes_list.value[0].decode() for p in parsed]
    files = [os.path.join(input_base, s) for s in source_ids]
    use_files = all(encoding.is_candidate_image(f) and tf.io.gfile.exists(f) for f in files)

    evaluated, served = [], []
    for start in range(0, len(records), _BATCH):
        batch = slice(start, start + _BATCH)
        evaluated.append(model.signatures[signatures.SERVING_EXAMPLES](
            examples=tf.constant(records[batch]))["class_id"].numpy())
        if use_files:
            data = [tf.io.gfile.GFile(f, "rb").read() for f in files[batch]]
            outputs = model.signatures[signatures.SERVING_BYTES](image_bytes=tf.constant(data))
        else:
            pixels = np.stack([np.array(p[encoding.IMAGE_FEATURE].int64_list.value, np.uint8)
                               .reshape(image_shape) for p in parsed[batch]])
            outputs = model.signatures[signatures.SERVING_DEFAULT](images=tf.constant(pixels))
        served.append(outputs["class_id"].numpy())
    evaluated_ids, served_ids = np.concatenate(evaluated), np.concatenate(served)
    return Parity(evaluated_accuracy=float(evaluated_accuracy),
                  served_accuracy=float((served_ids == labels).mean()),
                  disagreement=float((served_ids != evaluated_ids).mean()),
                  images=len(records),
                  serving_path=signatures.SERVING_BYTES if use_files else signatures.SERVING_DEFAULT)
