"""The image spec: the size and policies every image is brought to, once, in the graph."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

SUPPORTED_CHANNELS = (1, 3)
# tf.image.resize's methods; antialiasing on by default (downscaling without
# it aliases badly). Ingestion and every serving signature make this one call.
RESIZE_METHODS = ("bilinear", "area", "bicubic", "nearest")
# How an image of another aspect ratio reaches the target's: stretched, centre-
# cropped, or letterboxed with black (Keras's crop_to_aspect_ratio /
# pad_to_aspect_ratio), then resized.
ASPECT_POLICIES = ("stretch", "crop", "pad")
# EXIF orientation of JPEGs: turned upright as browsers and PIL's exif_transpose
# do, or ignored as TensorFlow's decoder does.
EXIF_POLICIES = ("apply", "ignore")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What the model takes: height x width x channels uint8, and how images get there.

    Its JSON form is written into the training record (`RECORD_KEY`), the
    registry row and every component's settings, so training and serving
    read the same object.
    """
    height: int
    width: int
    channels: int = 3
    resize_method: str = "bilinear"
    antialias: bool = True
    aspect: str = "stretch"
    # "ignore" here: what models exported before the policy existed did. New
    # configurations default to "apply" (pipeline/config.py).
    exif_orientation: str = "ignore"

    RECORD_KEY = "image_spec"

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if self.channels not in SUPPORTED_CHANNELS:
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name, allowed in (("resize_method", RESIZE_METHODS), ("aspect", ASPECT_POLICIES),
                              ("exif_orientation", EXIF_POLICIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def values_per_image(self) -> int:
        return self.height * self.width * self.channels

    def describe(self) -> str:
        return "x".join(str(v) for v in self.shape)

    def describe_policies(self) -> str:
        """e.g. "resize bilinear (antialiased), aspect crop, EXIF orientation applied"."""
        return (f"resize {self.resize_method}{' (antialiased)' if self.antialias else ''}, "
                f"aspect {self.aspect}, EXIF orientation "
                f"{'applied' if self.exif_orientation == 'apply' else 'ignored'}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ImageSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown image spec keys {unknown}")
        return cls(**{k: (int(v) if k in ("height", "width", "channels") else v)
                      for k, v in values.items()})

    @classmethod
    def from_shape(cls, shape) -> "ImageSpec":
        height, width, channels = (int(v) for v in shape)
        return cls(height=height, width=width, channels=channels)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "ImageSpec":
        """The spec a training record or registry row was written with.

        Records written before the spec existed carry only a shape list;
        their models were trained with today's default policies.
        """
        if cls.RECORD_KEY in record:
            return cls.from_dict(record[cls.RECORD_KEY])
        if "image_shape" in record:
            return cls.from_shape(record["image_shape"])
        raise KeyError(f"no {cls.RECORD_KEY!r} in the record")
