"""ValidationGate's parameters."""
from __future__ import annotations

from imgpipe.components.settings import ComponentSettings
from imgpipe.components.validation_gate.schema_curation import DriftThresholds


class ValidationSettings(ComponentSettings):
    thresholds: DriftThresholds = DriftThresholds()
    baseline_root: str = ""   # validated spans' statistics; "" = no drift check
