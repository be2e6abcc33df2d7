"""The preprocessing contract as data: what a client must send, and what the
exported graph does with it.

One JSON document, written as an asset inside the SavedModel by the Trainer,
stored in the registry row by the push, printed by `imgpipe registry show`
and served at `GET /v1/models/<name>/contract`. Every field comes from the
objects training and serving already share (ImageSpec, the normalisation
row, the signature names), so the document cannot drift from the graph.
"""
from __future__ import annotations

from typing import Any, Dict

from imgpipe.contract.image_spec import ImageSpec
from imgpipe.contract.names import SIGNATURES

VERSION = 1


def preprocessing_contract(spec: ImageSpec, normalization: Dict[str, Any]) -> Dict[str, Any]:
    """`normalization`: the InputNormalization row's to_dict() (what the network's first layer does)."""
    return {
        "contract_version": VERSION,
        "inputs": {
            SIGNATURES.pixels: {
                "input": SIGNATURES.pixels_input, "dtype": "uint8", "shape": [None, *spec.shape],
                "layout": "NHWC (channels last)", "value_range": [0, 255],
                "channel_order": "RGB" if spec.channels == 3 else "grey",
                "colour_space": "sRGB, as decoded (no colour management)",
                "already": f"decoded, oriented and resized to {spec.height}x{spec.width} by the client",
                "refused_by_serve": ["float arrays (any range)", "arrays whose values are only 0 and 1",
                                     "any other shape or layout (channels first, RGBA)"],
            },
            SIGNATURES.bytes: {
                "input": SIGNATURES.bytes_input, "dtype": "string", "shape": [None],
                "formats": ["JPEG", "PNG"],
                "decoder": "tf.io.decode_image (libjpeg-turbo, libpng); CMYK, palette, grey, "
                           "RGBA and 16-bit files converted to 8-bit "
                           f"{'RGB' if spec.channels == 3 else 'grey'}",
            },
        },
        "graph": {
            "exif_orientation": spec.exif_orientation,
            "aspect": spec.aspect,
            "resize_method": spec.resize_method,
            "antialias": spec.antialias,
            "size": [spec.height, spec.width],
            "scaling": "pixels / 255 -> float32 [0, 1]",
            "normalization": dict(normalization),
        },
    }
