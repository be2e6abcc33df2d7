"""CuratedSchema's parameters: the schema's text itself, not a path to it."""
from __future__ import annotations

import hashlib

from imgpipe.components.settings import ComponentSettings


class CuratedSchemaSettings(ComponentSettings):
    schema_text: str   # TFDV text format, as reviewed
    origin: str        # where it was read from when the pipeline was built (for people)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.schema_text.encode()).hexdigest()
