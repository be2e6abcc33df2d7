"""Pure ingestion logic: building tf.Examples, as Arrow and serialized.

Nothing here needs Beam or TFX. The Beam transforms in `ptransforms.py` call
these functions on batches. Two layouts:

Image files keep what arrived (`encoded_record_batch`); the Transform graph
decodes them with the serving_bytes ops (the stored example does not depend
on the model's image size; its properties do):
  image_encoded     bytes: the file, JPEG or PNG
  image_format      bytes: "JPEG" | "PNG"
  height, width, channels   int64: the file's decoded size
  exif_orientation  int64: 1..8
Arrays and pixel records keep their pixels (`examples_record_batch`): that
is where float and rescaled pixels arrive, and validation must see them:
  image       int64 list (integer sources, e.g. uint8) or float list (float
              sources), the pixels flattened in H, W, C order
  height, width, channels   int64
  pixel_dtype bytes: the source's pixel dtype, e.g. "uint8", "float64"
Both carry:
  brightness, contrast, mean_red, mean_green, mean_blue, aspect_ratio
              float: image_properties, on the pixels as the model sees them
              (image files) or as stored (arrays)
  label       int64 (absent when the source carries no label)
  source_id   bytes: the file path relative to the input base, or
              "<file>[<index>]" for arrays and records; for lineage only
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import pyarrow as pa

from imgpipe.contract import FEATURES, ImageSpec, image_files
from imgpipe.contract.image_properties import image_properties, upright_size, with_aspect


def _list_column(values: np.ndarray, row_length: int, arrow_type) -> pa.Array:
    rows = len(values) // row_length if row_length else 0
    offsets = pa.array(np.arange(0, (rows + 1) * row_length, row_length, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=arrow_type))


def _scalar_column(values: Sequence, arrow_type) -> pa.Array:
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(list(values), type=arrow_type))


_ENCODER = None


def examples_record_batch(pixels: np.ndarray, labels: Optional[Sequence[int]],
                          source_ids: Sequence[str], pixel_dtype: str) -> pa.RecordBatch:
    """A batch of same-shape images [n, h, w, c] in the tf.Example layout, as Arrow.

    Integer pixels become an int64 list and float pixels a float list, values
    unchanged (tf.Example has no float64: those are stored as float32 and
    `pixel_dtype` records the truth). TFDV computes statistics on this
    directly; `encode_examples` serializes it.
    """
    if pixels.ndim != 4:
        raise ValueError(f"pixels must be [n, h, w, c], got shape {pixels.shape}")
    count, height, width, channels = pixels.shape
    flat = pixels.reshape(-1)
    if np.issubdtype(pixels.dtype, np.floating):
        image_column = _list_column(flat.astype(np.float32, copy=False), height * width * channels,
                                    pa.float32())
    elif np.issubdtype(pixels.dtype, np.integer) or pixels.dtype == np.bool_:
        image_column = _list_column(flat.astype(np.int64, copy=False), height * width * channels,
                                    pa.int64())
    else:
        raise image_files.BadInput(f"pixel dtype {pixels.dtype} is neither integer nor float")
    columns = {
        FEATURES.image: image_column,
        FEATURES.height: _scalar_column([height] * count, pa.int64()),
        FEATURES.width: _scalar_column([width] * count, pa.int64()),
        FEATURES.channels: _scalar_column([channels] * count, pa.int64()),
        FEATURES.pixel_dtype: _scalar_column([pixel_dtype.encode()] * count, pa.binary()),
        **_property_columns(image_properties(pixels, [width] * count, [height] * count)),
    }
    return _with_lineage(columns, labels, source_ids)


def _property_columns(properties) -> dict:
    return {name: _scalar_column(np.asarray(properties[name], np.float32), pa.float32())
            for name in FEATURES.properties}


def _with_lineage(columns: dict, labels: Optional[Sequence[int]],
                  source_ids: Sequence[str]) -> pa.RecordBatch:
    columns[FEATURES.source_id] = _scalar_column([s.encode() for s in source_ids], pa.binary())
    if labels is not None:
        columns[FEATURES.label] = _scalar_column([int(v) for v in labels], pa.int64())
    return pa.RecordBatch.from_arrays(list(columns.values()), list(columns.keys()))


def encoded_record_batch(decoded: Sequence, labels: Optional[Sequence[int]],
                         source_ids: Sequence[str], spec: ImageSpec) -> pa.RecordBatch:
    """Decoded image files (image_ops.Decoded) in the encoded layout, as Arrow:
    the files' bytes as they arrived, their size, format and orientation, and
    the properties of their pixels as the model sees them."""
    applied = spec.exif_orientation == "apply"
    sizes = [upright_size(d.shape[1], d.shape[0], d.orientation, applied) for d in decoded]
    properties = with_aspect({name: [d.properties[name] for d in decoded]
                              for name in FEATURES.properties if name != FEATURES.aspect_ratio},
                             [w for w, _ in sizes], [h for _, h in sizes])
    columns = {
        FEATURES.image_encoded: _scalar_column([d.data for d in decoded], pa.binary()),
        FEATURES.image_format: _scalar_column([d.format.encode() for d in decoded], pa.binary()),
        FEATURES.height: _scalar_column([d.shape[0] for d in decoded], pa.int64()),
        FEATURES.width: _scalar_column([d.shape[1] for d in decoded], pa.int64()),
        FEATURES.channels: _scalar_column([d.shape[2] for d in decoded], pa.int64()),
        FEATURES.exif_orientation: _scalar_column([d.orientation for d in decoded], pa.int64()),
        **_property_columns(properties),
    }
    return _with_lineage(columns, labels, source_ids)


def serialize(record_batch: pa.RecordBatch) -> List[bytes]:
    """A record batch as serialized tf.Examples (tfx-bsl's C++ encoder)."""
    global _ENCODER
    if _ENCODER is None:
        from tfx_bsl.coders import example_coder
        _ENCODER = example_coder.RecordBatchToExamplesEncoder()
    if record_batch.num_rows == 0:
        return []
    return list(_ENCODER.encode(record_batch))


def encode_examples(pixels: np.ndarray, labels: Optional[Sequence[int]],
                    source_ids: Sequence[str], pixel_dtype: str) -> List[bytes]:
    """Serializes a batch of same-shape images as tf.Examples in the pixel layout."""
    if len(pixels) == 0:
        return []
    return serialize(examples_record_batch(pixels, labels, source_ids, pixel_dtype))


def encode_files(decoded: Sequence, labels: Optional[Sequence[int]], source_ids: Sequence[str],
                 spec: ImageSpec) -> List[bytes]:
    """Serializes decoded image files as tf.Examples in the encoded layout."""
    if not decoded:
        return []
    return serialize(encoded_record_batch(decoded, labels, source_ids, spec))


def as_nhwc(array: np.ndarray, what: str) -> np.ndarray:
    """Gives (n, h, w) arrays their channel axis; anything else is an error."""
    if array.ndim == 3:
        return array[..., np.newaxis]
    if array.ndim == 4:
        return array
    raise image_files.BadInput(f"{what}: expected images of shape (N, H, W) or (N, H, W, C), "
                   f"got {tuple(array.shape)}")


def labels_from_array(y: np.ndarray, count: int, what: str) -> np.ndarray:
    """Validates the label array of an array source: (N,) or (N, 1) integers."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise image_files.BadInput(f"{what}: expected labels y of shape (N,) or (N, 1), got {tuple(y.shape)}")
    if len(y) != count:
        raise image_files.BadInput(f"{what}: x has {count} images but y has {len(y)} labels")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise image_files.BadInput(f"{what}: labels y must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)
