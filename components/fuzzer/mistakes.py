"""The client mistakes the fuzzer sends, each built the way a client would.

A mistake turns one evaluation input (the original file's bytes when there is
one, and the uint8 pixels the contract prepares from it) into the request a
careless client sends: encoded bytes for `serving_bytes`, or an array (any
dtype, any layout) for `serving_default`. Decoding and encoding use Pillow,
as client code does; nothing here knows what the model will make of it.
"""
from __future__ import annotations

import dataclasses
import io
from typing import Callable, Dict, List, Optional, Union

import numpy as np
from PIL import Image

from imgpipe.contract import ImageSpec

Request = Union[bytes, np.ndarray]
# The clean requests of each signature: every other row is measured against them.
REFERENCES = {"pixels": "clean pixels", "bytes": "clean bytes"}
EXIF_ORIENTATION_TAG = 0x0112
_ROTATED_90_CW = 6   # EXIF: stored turned 90 degrees; a viewer turns it clockwise upright


@dataclasses.dataclass(frozen=True)
class Original:
    """One evaluation input: the file's bytes (None for array sources) and the
    uint8 pixels [h, w, c] the contract makes of it; `decoded`: Pillow's RGB
    decode of the file, when kept (with_decoded)."""
    encoded: Optional[bytes]
    pixels: np.ndarray
    decoded: Optional[Image.Image] = dataclasses.field(default=None, compare=False, repr=False)


# Pillow's decodes kept for the rows that start from one (resizes, re-encodes:
# a dozen rows decode the same file). 32 px originals all fit; of photos, the
# first ones that fit, the rest decoded again by each row.
DECODED_BUDGET_BYTES = 64 << 20


def with_decoded(originals: List[Original], budget: int = DECODED_BUDGET_BYTES) -> List[Original]:
    kept = []
    for original in originals:
        if original.encoded is not None and budget > 0:
            image = _pil_rgb(original)
            budget -= image.width * image.height * 3
            if budget >= 0:
                original = dataclasses.replace(original, decoded=image)
        kept.append(original)
    return kept


@dataclasses.dataclass(frozen=True)
class Mistake:
    name: str
    description: str
    sends: str                      # "bytes" (serving_bytes) | "pixels" (serving_default)
    build: Callable[[Original, ImageSpec], Request]
    needs_file: bool = False        # only where the original is an encoded file

    def request(self, original: Original, spec: ImageSpec) -> Request:
        return self.build(original, spec)


# -- pixels a client computed itself ---------------------------------------------------------

def _scaled(low: float, high: float, dtype) -> Callable[[Original, ImageSpec], np.ndarray]:
    def build(original: Original, _spec: ImageSpec) -> np.ndarray:
        unit = original.pixels.astype(np.float64) / 255.0
        return (low + unit * (high - low)).astype(dtype)
    return build


def _integers_0_1(original: Original, _spec: ImageSpec) -> np.ndarray:
    """Scaled to [0, 1], then cast back to the uint8 the signature asks for."""
    return np.round(original.pixels / 255.0).astype(np.uint8)


def _brightness(factor: float) -> Callable[[Original, ImageSpec], np.ndarray]:
    def build(original: Original, _spec: ImageSpec) -> np.ndarray:
        return np.clip(np.round(original.pixels * factor), 0, 255).astype(np.uint8)
    return build


def _grey_replicated(original: Original, _spec: ImageSpec) -> np.ndarray:
    grey = np.asarray(Image.fromarray(original.pixels).convert("L"))
    return np.repeat(grey[..., np.newaxis], original.pixels.shape[-1], axis=-1)


def _with_alpha(original: Original, _spec: ImageSpec) -> np.ndarray:
    alpha = np.full(original.pixels.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([original.pixels, alpha], axis=-1)


# -- a client decoding and resizing with Pillow ----------------------------------------------

_PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


def _pil_rgb(original: Original) -> Image.Image:
    """Pillow's RGB decode of the file (no build changes it: each makes a new image)."""
    if original.decoded is not None:
        return original.decoded
    return Image.open(io.BytesIO(original.encoded)).convert("RGB")


def _pil_resize(method: str, antialias: bool) -> Callable[[Original, ImageSpec], np.ndarray]:
    """Pillow's resize filters scale with the reduction (antialiased); an affine
    transform samples the same filter without widening it (no antialiasing, as
    OpenCV's resize)."""
    def build(original: Original, spec: ImageSpec) -> np.ndarray:
        image, size = _pil_rgb(original), (spec.width, spec.height)
        if antialias:
            resized = image.resize(size, _PIL_FILTERS[method])
        else:
            sx, sy = image.width / spec.width, image.height / spec.height
            resized = image.transform(size, Image.AFFINE, (sx, 0, (sx - 1) / 2, 0, sy, (sy - 1) / 2),
                                      resample=_PIL_FILTERS[method])
        return np.asarray(resized, np.uint8)
    return build


def _centre_crop(original: Original, spec: ImageSpec) -> np.ndarray:
    """Cropped to the target's aspect ratio around the centre, then resized."""
    image = _pil_rgb(original)
    target = spec.width / spec.height
    width, height = image.size
    crop_w, crop_h = (round(height * target), height) if width / height > target else \
        (width, round(width / target))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    cropped = image.crop((left, top, left + crop_w, top + crop_h))
    return np.asarray(cropped.resize((spec.width, spec.height), Image.BILINEAR), np.uint8)


# -- files a client re-encoded ---------------------------------------------------------------

def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _jpeg(quality: int) -> Callable[[Original, ImageSpec], bytes]:
    def build(original: Original, _spec: ImageSpec) -> bytes:
        return _encoded(_pil_rgb(original), "JPEG", quality=quality)
    return build


def _png_mode(mode: str) -> Callable[[Original, ImageSpec], bytes]:
    def build(original: Original, _spec: ImageSpec) -> bytes:
        image = _pil_rgb(original)
        # A palette by Pillow's fast octree quantizer: median cut (convert's
        # default) costs 25x as much for a palette no more faithful.
        converted = image.quantize(256, method=Image.Quantize.FASTOCTREE) if mode == "P" \
            else image.convert(mode)
        return _encoded(converted, "PNG", compress_level=1)   # lossless at any level
    return build


def _png_16_bit(original: Original, _spec: ImageSpec) -> bytes:
    import tensorflow as tf
    wide = np.asarray(_pil_rgb(original), np.uint16) * 257   # 0..255 -> 0..65535
    return tf.io.encode_png(tf.constant(wide), compression=1).numpy()   # lossless at any level


def _phone_photo(keep_tag: bool) -> Callable[[Original, ImageSpec], bytes]:
    """A phone's JPEG: pixels stored turned 90 degrees with an EXIF tag that
    turns them upright. Sent as the phone wrote it, or with the tag stripped
    (re-saved without EXIF, pixels still turned)."""
    def build(original: Original, _spec: ImageSpec) -> bytes:
        stored = _pil_rgb(original).transpose(Image.ROTATE_90)   # upright after a clockwise turn
        if not keep_tag:
            return _encoded(stored, "JPEG", quality=95)
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = _ROTATED_90_CW
        return _encoded(stored, "JPEG", quality=95, exif=exif.tobytes())
    return build


def _as_sent(original: Original, _spec: ImageSpec) -> bytes:
    return original.encoded


def _clean_pixels(original: Original, _spec: ImageSpec) -> np.ndarray:
    return original.pixels


def catalogue() -> List[Mistake]:
    """Every mistake, clean references first."""
    pixels = [
        Mistake("clean pixels", "uint8 RGB [h, w, c], prepared as the contract does", "pixels",
                _clean_pixels),
        Mistake("float [0, 1] (float32)", "pixels / 255 as float32", "pixels", _scaled(0, 1, np.float32)),
        Mistake("float [0, 1] (float64)", "pixels / 255 as float64 (NumPy's default)", "pixels",
                _scaled(0, 1, np.float64)),
        Mistake("float [-1, 1]", "pixels / 127.5 - 1 (MobileNet's preprocess_input)", "pixels",
                _scaled(-1, 1, np.float32)),
        Mistake("float 0..255", "pixels as float32, unscaled", "pixels", _scaled(0, 255, np.float32)),
        Mistake("integers 0/1", "scaled to [0, 1], then cast to uint8", "pixels", _integers_0_1),
        Mistake("BGR", "channels reversed (an OpenCV client)", "pixels",
                lambda o, _s: np.ascontiguousarray(o.pixels[..., ::-1])),
        Mistake("channels first", "[c, h, w] (a PyTorch client)", "pixels",
                lambda o, _s: np.ascontiguousarray(np.transpose(o.pixels, (2, 0, 1)))),
        Mistake("grey replicated", "luminance copied to every channel", "pixels", _grey_replicated),
        Mistake("RGBA array", "an alpha channel kept", "pixels", _with_alpha),
        Mistake("brightness +20%", "pixels x 1.2, clipped", "pixels", _brightness(1.2)),
        Mistake("brightness -20%", "pixels x 0.8", "pixels", _brightness(0.8)),
        Mistake("horizontal flip", "mirrored left to right", "pixels",
                lambda o, _s: np.ascontiguousarray(o.pixels[:, ::-1])),
    ]
    clients = [Mistake(f"PIL {method}{'' if antialias else ' no antialias'}",
                       f"decoded and resized by Pillow ({method}, "
                       f"{'antialiased' if antialias else 'not antialiased'})", "pixels",
                       _pil_resize(method, antialias), needs_file=True)
               for method in ("bilinear", "bicubic", "nearest") for antialias in (True, False)]
    clients.append(Mistake("centre crop", "cropped to the target aspect, then resized (Pillow)",
                           "pixels", _centre_crop, needs_file=True))
    files = [
        Mistake("clean bytes", "the original file", "bytes", _as_sent, needs_file=True),
        Mistake("JPEG quality 75", "re-encoded by a CDN", "bytes", _jpeg(75), needs_file=True),
        Mistake("JPEG quality 30", "re-encoded hard", "bytes", _jpeg(30), needs_file=True),
        Mistake("EXIF-tagged phone JPEG", "stored turned, with the orientation tag", "bytes",
                _phone_photo(keep_tag=True), needs_file=True),
        Mistake("EXIF stripped", "stored turned, the tag stripped by the client", "bytes",
                _phone_photo(keep_tag=False), needs_file=True),
        Mistake("RGBA PNG", "with an alpha channel", "bytes", _png_mode("RGBA"), needs_file=True),
        Mistake("grey PNG", "one channel", "bytes", _png_mode("L"), needs_file=True),
        Mistake("palette PNG", "256-colour palette", "bytes", _png_mode("P"), needs_file=True),
        Mistake("16-bit PNG", "16 bits per channel", "bytes", _png_16_bit, needs_file=True),
    ]
    return pixels + clients + files


def by_name() -> Dict[str, Mistake]:
    return {mistake.name: mistake for mistake in catalogue()}
