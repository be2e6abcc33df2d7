"""Statistics of validated spans, kept as the baselines later spans drift from.

A plain folder (local or any TFX filesystem, e.g. gs://), so it works on every
orchestrator: `<root>/span-<N>/Split-<name>/FeatureStats.pb`. Only spans that
passed validation are recorded, so a drifted span never becomes the baseline.
TFX's Resolver would do this from ML Metadata, but open-source Kubeflow
cannot run Resolver nodes.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Optional, Tuple

from tfx.dsl.io import fileio

_SPAN_DIR = re.compile(r"^span-(\d+)$")
STATS_FILE = "FeatureStats.pb"
SPLIT_PREFIX = "Split-"


def previous_span(root: str, span: int) -> Optional[Tuple[int, str]]:
    """The latest recorded span before `span`, and its folder."""
    if not root or not fileio.exists(root):
        return None
    spans = []
    for entry in fileio.listdir(root):
        match = _SPAN_DIR.match(entry.rstrip("/"))
        if match and int(match.group(1)) < span:
            spans.append(int(match.group(1)))
    if not spans:
        return None
    latest = max(spans)
    return latest, os.path.join(root, f"span-{latest}")


def split_statistics_files(folder: str) -> Dict[str, str]:
    """split name -> statistics file of a statistics folder laid out as TFX writes
    it (`<folder>/Split-<name>/FeatureStats.pb`: an ExampleStatistics artifact,
    or one recorded span here); empty for any other folder."""
    if not fileio.isdir(folder):
        return {}
    files = {}
    for entry in fileio.listdir(folder):
        name = entry.rstrip("/")
        path = os.path.join(folder, name, STATS_FILE)
        if name.startswith(SPLIT_PREFIX) and fileio.exists(path) and not fileio.isdir(path):
            files[name[len(SPLIT_PREFIX):]] = path
    return files


def record(root: str, span: int, split_stats: Dict[str, str]) -> str:
    """Copies each split's statistics file into the baseline folder of `span`."""
    target = os.path.join(root, f"span-{span}")
    for split, path in split_stats.items():
        folder = os.path.join(target, f"{SPLIT_PREFIX}{split}")
        fileio.makedirs(folder)
        fileio.copy(path, os.path.join(folder, STATS_FILE), overwrite=True)
    return target
