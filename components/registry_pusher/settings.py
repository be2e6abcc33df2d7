"""RegistryPusher's parameters."""
from __future__ import annotations

from imgpipe.components.settings import ComponentSettings


class PushSettings(ComponentSettings):
    # Locations without passwords; the executor prefers IMGPIPE_REGISTRY_URL
    # and MLFLOW_TRACKING_URI from its environment.
    model_name: str
    registry_url: str
    mlflow_tracking_uri: str
    mlflow_experiment: str
    mlflow_artifact_root: str
    serving_root: str
    promote: bool = True
    auto_migrate: bool = True
