"""ValidationGate's parameters."""
from __future__ import annotations

from typing import Optional

from imgpipe.components.settings import ComponentSettings
from imgpipe.components.validation_gate.schema_curation import DriftThresholds
from imgpipe.contract import ImageSpec


class ValidationSettings(ComponentSettings):
    thresholds: DriftThresholds = DriftThresholds()
    baseline_root: str = ""   # validated spans' statistics; "" = no drift check
    image: Optional[ImageSpec] = None   # for the look at the data; None: no pictures
