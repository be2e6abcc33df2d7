"""Image files as both sides see them: which files are images, what their header says.

Ingestion probes every file with these functions before decoding it, and the
prediction service probes every upload with the same ones, so a file refused
by one is refused by the other for the same reason.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
import warnings
from typing import List, Sequence

from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SUPPORTED_FORMATS = ("JPEG", "PNG")
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

# Conversion names, as counted in the ingestion report.
RESIZED = "resized"
GREY_TO_RGB = "grayscale -> RGB"
RGB_TO_GREY = "RGB -> grayscale"
ALPHA_DROPPED = "alpha channel dropped"
ASPECT_FITTED = {"crop": "centre-cropped to the aspect ratio",
                 "pad": "padded to the aspect ratio (black)"}
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
        raise BadInput(f"decompression bomb: {_without_object_reprs(str(error))}") from None
    except Exception as error:  # Pillow raises many types for garbage input.
        try:
            info = _header(data, None)
        except Exception:
            raise BadInput(f"not a readable JPEG or PNG image ({type(error).__name__}: "
                           f"{_without_object_reprs(str(error))})") from None
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


def _without_object_reprs(message: str) -> str:
    """Pillow names the buffer it read (<_io.BytesIO object at 0x...>): noise in a reason."""
    return re.sub(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>", "", message)


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


def conversions_for(info: ImageInfo, decoded_shape: Sequence[int], spec,
                    orientation: int = 1) -> List[str]:
    """Names of the conversions the shared image ops applied to one image (to an
    ImageSpec); `orientation`: its EXIF orientation (1 upright)."""
    height, width, channels = spec.shape
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
    if orientation != 1:
        done.append(f"EXIF orientation {orientation} "
                    f"{'applied' if spec.exif_orientation == 'apply' else 'ignored'}")
        if spec.exif_orientation == "apply" and orientation >= 5:   # turned a quarter
            source_height, source_width = source_width, source_height
    if spec.aspect != "stretch" and source_height * width != source_width * height:
        done.append(ASPECT_FITTED[spec.aspect])
    if (source_height, source_width) != (height, width):
        done.append(f"{RESIZED} from {source_height}x{source_width}")
    return done
