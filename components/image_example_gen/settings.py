"""ImageExampleGen's parameters (beside TFX's own input/output/range configs)."""
from __future__ import annotations

from typing import Dict, List, Optional

from pydantic import Field

from imgpipe.components.settings import ComponentSettings
from imgpipe.contract import ImageSpec
from imgpipe.contract.image_files import DEFAULT_MAX_IMAGE_PIXELS


class IngestionSettings(ComponentSettings):
    source: str                        # as configured (for the report)
    format: str                        # folders | npz | tfrecord
    image: ImageSpec                   # image files are decoded and resized to this
    classes: List[str] = []            # empty: the class folder names, sorted
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    span_override: Optional[int] = None  # a fixed path ingested as span N (`--span N`)
    compiled_input_base: str = ""      # the folder compiled in; a run may read another
    # Split folders: input split -> {output split: hash buckets} (sources.split_routes).
    # Empty: one input, split by the output config's hash buckets (TFX's way).
    split_routes: Dict[str, Dict[str, int]] = {}
