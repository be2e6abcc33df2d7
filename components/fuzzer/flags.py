"""Would production notice? `imgpipe monitor`'s own checks on a sample of a mistake's requests.

A mistake the model accepts is FLAGGED when a check that already watches
serving would raise it: the monitor's confidence floor on the answers, and
its input-skew check on the requests (the validation gate's in-process
validation against the curated schema in the serving environment, drift
against the training statistics: what `imgpipe validate --environment
serving --baseline <training statistics>` runs on a folder).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any, List, Optional, Sequence

import numpy as np

from imgpipe.components.fuzzer.mistakes import Request
from imgpipe.contract import ImageSpec


@dataclasses.dataclass(frozen=True)
class MonitorChecks:
    min_mean_confidence: float = 0.7
    pixel_js_threshold: float = 0.1
    schema: Any = None                 # the curated schema (proto); None: no skew check
    training_statistics: Any = None    # DatasetFeatureStatisticsList; None: no skew check
    sample: int = 200                  # requests per mistake the skew check reads


def monitor_checks(min_mean_confidence: float, pixel_js_threshold: float,
                   schema_dir: Optional[str], statistics_dir: Optional[str]) -> MonitorChecks:
    """The checks, with the skew check when a run's curated schema (a Schema
    artifact folder) and training statistics (a statistics folder or file) exist."""
    schema = statistics = None
    if schema_dir and statistics_dir:
        import tensorflow_data_validation as tfdv

        from imgpipe.components.validation_gate import inprocess
        from imgpipe.contract import ARTIFACTS
        schema = tfdv.load_schema_text(os.path.join(schema_dir, ARTIFACTS.schema))
        statistics = inprocess.load_statistics_file(statistics_dir)
    return MonitorChecks(min_mean_confidence, pixel_js_threshold, schema, statistics)


def _write_samples(requests: Sequence[Request], folder: str) -> List[str]:
    """As the prediction log samples them: encoded files as they came, arrays as .npy."""
    paths = []
    for index, request in enumerate(requests):
        path = os.path.join(folder, f"{index:05d}{'.bin' if isinstance(request, bytes) else '.npy'}")
        if isinstance(request, bytes):
            with open(path, "wb") as handle:
                handle.write(request)
        else:
            np.save(path, request)
        paths.append(path)
    return paths


def raised(requests: Sequence[Request], probabilities: np.ndarray, class_names: Sequence[str],
           spec: ImageSpec, checks: Optional[MonitorChecks],
           clean_confidence: float = 1.0) -> List[str]:
    """The monitor checks that raise this traffic: '<check>: <detail>' each. The
    confidence floor counts only when clean traffic clears it: an alarm that
    also rings for clean traffic tells no one about this mistake."""
    from imgpipe.serving import monitor
    if checks is None:
        return []
    found = []
    classes = [class_names[i] for i in probabilities.argmax(axis=1)]
    confidence = monitor.confidence_check(list(probabilities.max(axis=1)), classes, None,
                                          checks.min_mean_confidence, 1)
    if confidence.status == monitor.ALERT and clean_confidence >= checks.min_mean_confidence:
        found.append(f"monitor confidence: {confidence.detail}")
    if checks.schema is not None and checks.training_statistics is not None:
        from imgpipe.components.validation_gate import serving_skew
        with tempfile.TemporaryDirectory(prefix="imgpipe-fuzz-samples-") as folder:
            paths = _write_samples(requests[:checks.sample], folder)
            skew = serving_skew.skew_check(paths, spec, checks.schema, checks.training_statistics,
                                           checks.pixel_js_threshold, 1)
        if skew.status == monitor.ALERT:
            found.append(f"monitor input skew: {skew.detail}")
    return found
