"""Keeping the reports of a refused execution.

When an executor raises, TFX's launcher deletes the execution's output
folders, and with them the report that says why. Executors that refuse data
(ingestion, validation) copy their report here first:
`<pipeline_root>/<Component>/failed/<execution id>/`.
"""
from __future__ import annotations

import os

from tfx.dsl.io import fileio


def failed_outputs_dir(artifact_uri: str) -> str:
    """<root>/<Component>/<output key>/<id> -> <root>/<Component>/failed/<id>."""
    uri = artifact_uri.rstrip("/")
    execution_id = os.path.basename(uri)
    component_dir = os.path.dirname(os.path.dirname(uri))
    return os.path.join(component_dir, "failed", execution_id)


def preserve(artifact_uri: str) -> str:
    """Copies the files of an output folder to its `failed` location."""
    target = failed_outputs_dir(artifact_uri)
    for directory, _, files in fileio.walk(artifact_uri):
        relative = os.path.relpath(directory, artifact_uri)
        destination = os.path.normpath(os.path.join(target, relative))
        fileio.makedirs(destination)
        for name in files:
            fileio.copy(os.path.join(directory, name), os.path.join(destination, name),
                        overwrite=True)
    return target
