"""ChampionResolver's parameters."""
from __future__ import annotations

from imgpipe.components.settings import ComponentSettings


class ResolverSettings(ComponentSettings):
    # Without a password: the executor prefers IMGPIPE_REGISTRY_URL.
    registry_url: str
    model_name: str
    auto_migrate: bool = True
    serving_root: str = ""   # where a restored runs/ keeps the champion's serving copy
