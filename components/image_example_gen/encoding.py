"""Pure ingestion logic: probing files, naming conversions, building tf.Examples.

Nothing here needs Beam or TFX. The Beam transforms in `ptransforms.py` call
these functions on batches.

Example layout written by ingestion (the dtype of the source is kept):
  image       int64 list (integer sources, e.g. uint8) or float list (float
              sources), the pixels flattened in H, W, C order
  height, width, channels   int64
  label       int64 (absent when the source carries no label)
  source_id   bytes: the file path relative to the input base, or
              "<file>[<index>]" for arrays and records; for lineage only
  pixel_dtype bytes: the source's pixel dtype, e.g. "uint8", "float64"
"""
from __future__ import annotations

import dataclasses
import io
import os
import warnings
from typing import List, Optional, Sequence

import numpy as np
import pyarrow as pa
from PIL import Image

IMAGE_FEATURE = "image"
HEIGHT_FEATURE = "height"
WIDTH_FEATURE = "width"
CHANNELS_FEATURE = "channels"
LABEL_FEATURE = "label"
SOURCE_ID_FEATURE = "source_id"
PIXEL_DTYPE_FEATURE = "pixel_dtype"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SUPPORTED_FORMATS = ("JPEG", "PNG")
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

# Conversion names, as counted in the ingestion report.
RESIZED = "resized"
GREY_TO_RGB = "grayscale -> RGB"
RGB_TO_GREY = "RGB -> grayscale"
ALPHA_DROPPED = "alpha channel dropped"
PALETTE_EXPANDED = "palette -> RGB"
CMYK_TO_RGB = "CMYK -> RGB"
SIXTEEN_BIT = "16-bit -> 8-bit (high byte)"
LOW_BIT_EXPANDED = "1/2/4-bit -> 8-bit"


class BadInput(Exception):
    """One input that cannot become an example; the message is the reason."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the file header says, read without decoding the pixels."""
    format: str
    mode: str
    width: int
    height: int
    bit_depth: int


def is_candidate_image(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def probe_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageInfo:
    """Reads format, mode and size from the header; raises BadInput.

    Catches empty files, non-images and oversized (decompression bomb) images
    before any pixel is decoded.
    """
    if not data:
        raise BadInput("empty file (0 bytes)")
    try:
        # Trying only the two supported formats halves the cost of the probe;
        # anything else is opened again below, just to name it.
        info = _header(data, SUPPORTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise BadInput(f"decompression bomb: {error}") from None
    except Exception as error:  # Pillow raises many types for garbage input.
        try:
            info = _header(data, None)
        except Exception:
            raise BadInput(f"not a readable JPEG or PNG image ({type(error).__name__}: {error})") from None
    if info.format not in SUPPORTED_FORMATS:
        raise BadInput(f"format {info.format} is not supported; expected JPEG or PNG")
    pixels = info.width * info.height
    if pixels > max_pixels:
        raise BadInput(
            f"image is {info.width}x{info.height} = {pixels:,} pixels, above the limit of "
            f"{max_pixels:,} (possible decompression bomb)")
    if info.width == 0 or info.height == 0:
        raise BadInput(f"image has no pixels ({info.width}x{info.height})")
    return info


def _header(data: bytes, formats) -> ImageInfo:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data), formats=formats) as image:
            return ImageInfo(format=image.format or "unknown", mode=image.mode,
                             width=image.width, height=image.height,
                             bit_depth=_bit_depth(data, image.mode))


def _bit_depth(data: bytes, mode: str) -> int:
    # PNG IHDR: 8-byte signature, 4-byte length, "IHDR", width, height, depth.
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24:
        return data[24]
    return 16 if mode.startswith("I;16") else 8


def conversions_for(info: ImageInfo, decoded_shape: Sequence[int],
                    height: int, width: int, channels: int) -> List[str]:
    """Names of the conversions the shared image ops applied to one image."""
    done = []
    if info.mode == "P":
        done.append(PALETTE_EXPANDED)
    if info.mode == "CMYK":
        done.append(CMYK_TO_RGB)
    if info.bit_depth == 16:
        done.append(SIXTEEN_BIT)
    elif info.bit_depth < 8 and info.mode != "P":
        done.append(LOW_BIT_EXPANDED)
    source_height, source_width, source_channels = (int(v) for v in decoded_shape)
    if source_channels in (2, 4):
        done.append(ALPHA_DROPPED)
    if source_channels in (1, 2) and channels == 3:
        done.append(GREY_TO_RGB)
    if source_channels in (3, 4) and channels == 1:
        done.append(RGB_TO_GREY)
    if (source_height, source_width) != (height, width):
        done.append(f"{RESIZED} from {source_height}x{source_width}")
    return done


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
        raise BadInput(f"pixel dtype {pixels.dtype} is neither integer nor float")
    columns = {
        IMAGE_FEATURE: image_column,
        HEIGHT_FEATURE: _scalar_column([height] * count, pa.int64()),
        WIDTH_FEATURE: _scalar_column([width] * count, pa.int64()),
        CHANNELS_FEATURE: _scalar_column([channels] * count, pa.int64()),
        SOURCE_ID_FEATURE: _scalar_column([s.encode() for s in source_ids], pa.binary()),
        PIXEL_DTYPE_FEATURE: _scalar_column([pixel_dtype.encode()] * count, pa.binary()),
    }
    if labels is not None:
        columns[LABEL_FEATURE] = _scalar_column([int(v) for v in labels], pa.int64())
    return pa.RecordBatch.from_arrays(list(columns.values()), list(columns.keys()))


def encode_examples(pixels: np.ndarray, labels: Optional[Sequence[int]],
                    source_ids: Sequence[str], pixel_dtype: str) -> List[bytes]:
    """Serializes a batch of same-shape images as tf.Examples (tfx-bsl's C++ encoder)."""
    global _ENCODER
    if _ENCODER is None:
        from tfx_bsl.coders import example_coder
        _ENCODER = example_coder.RecordBatchToExamplesEncoder()
    if len(pixels) == 0:
        return []
    return list(_ENCODER.encode(examples_record_batch(pixels, labels, source_ids, pixel_dtype)))


def as_nhwc(array: np.ndarray, what: str) -> np.ndarray:
    """Gives (n, h, w) arrays their channel axis; anything else is an error."""
    if array.ndim == 3:
        return array[..., np.newaxis]
    if array.ndim == 4:
        return array
    raise BadInput(f"{what}: expected images of shape (N, H, W) or (N, H, W, C), "
                   f"got {tuple(array.shape)}")


def labels_from_array(y: np.ndarray, count: int, what: str) -> np.ndarray:
    """Validates the label array of an array source: (N,) or (N, 1) integers."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise BadInput(f"{what}: expected labels y of shape (N,) or (N, 1), got {tuple(y.shape)}")
    if len(y) != count:
        raise BadInput(f"{what}: x has {count} images but y has {len(y)} labels")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise BadInput(f"{what}: labels y must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)
