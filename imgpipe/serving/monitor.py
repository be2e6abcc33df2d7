"""`imgpipe monitor`: what is served, against what was evaluated and trained on.

Three checks over a window of the prediction log, each OK, ALERT or SKIPPED:

- confidence: the mean top-1 confidence (alert below a floor, 0.7 as in the
  source article), with per-class means beside the evaluation baseline;
- class distribution: L-infinity distance between the predicted-class
  distribution and the one the served path produced on the evaluation split;
- input skew: TFDV statistics of the sampled inputs, decoded by the same
  TensorFlow ops as serving, validated against the curated schema and the
  training statistics (the validation gate's code: JS divergence of pixels,
  the [0, 1]-scaled-pixels check, shapes).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

OK, ALERT, SKIPPED = "OK", "ALERT", "SKIPPED"


@dataclasses.dataclass
class Check:
    name: str
    status: str
    value: Optional[float]
    threshold: Optional[float]
    detail: str
    extra: Dict[str, object] = dataclasses.field(default_factory=dict)


def parse_since(text: str, now: Optional[dt.datetime] = None) -> dt.datetime:
    """'30m', '24h', '7d' before now, or an ISO time (UTC when no zone is given)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - dt.timedelta(**{unit: float(match.group(1))})
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r}: expected 30m, 24h, 7d or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def confidence_check(confidences: Sequence[float], classes: Sequence[str],
                     baseline: Optional[dict], floor: float, minimum: int) -> Check:
    count = len(confidences)
    if count < minimum:
        return Check("confidence", SKIPPED, None, floor,
                     f"{count} predictions in the window, fewer than {minimum}")
    mean = float(np.mean(confidences))
    per_class = {name: float(np.mean([c for c, k in zip(confidences, classes) if k == name]))
                 for name in sorted(set(classes))}
    base = (baseline or {}).get("mean_confidence")
    versus = f" (evaluation: {base:.3f})" if base is not None and not math.isnan(base) else ""
    status = ALERT if mean < floor else OK
    detail = (f"mean confidence {mean:.3f} over {count} predictions{versus}"
              + (f", below the floor {floor:g}" if status == ALERT else ""))
    return Check("confidence", status, mean, floor, detail, {
        "per_class": per_class, "baseline_per_class": (baseline or {}).get("per_class_confidence", {})})


def class_distribution_check(classes: Sequence[str], class_names: Sequence[str],
                             baseline: Optional[dict], threshold: float, minimum: int) -> Check:
    expected = (baseline or {}).get("predicted_distribution")
    if len(classes) < minimum:
        return Check("class distribution", SKIPPED, None, threshold,
                     f"{len(classes)} predictions in the window, fewer than {minimum}")
    if not expected:
        return Check("class distribution", SKIPPED, None, threshold,
                     "the model's registry row has no serving baseline (pushed before revision 0002)")
    observed = {name: classes.count(name) / len(classes) for name in class_names}
    gaps = {name: abs(observed[name] - expected.get(name, 0.0)) for name in class_names}
    worst = max(gaps, key=gaps.get)
    distance = gaps[worst]
    status = ALERT if distance > threshold else OK
    detail = (f"L-infinity {distance:.3f} (largest for {worst}: {observed[worst]:.1%} served vs "
              f"{expected.get(worst, 0.0):.1%} on the evaluation split)")
    return Check("class distribution", status, distance, threshold, detail,
                 {"observed": observed, "expected": expected})


def load_samples(paths: Sequence[str], image_shape: Sequence[int]) -> np.ndarray:
    """Sampled inputs as uint8 [n, h, w, c], decoded exactly as serving decodes them."""
    from imgpipe.components.image_example_gen import image_ops
    import tensorflow as tf
    height, width, channels = image_shape
    images = []
    for path in paths:
        if path.endswith(".npy"):
            images.append(np.load(path).astype(np.uint8))
        else:
            with open(path, "rb") as handle:
                data = handle.read()
            images.append(image_ops.decode_and_prepare(tf.constant(data), height, width,
                                                       channels).numpy())
    return np.stack(images) if images else np.zeros((0, height, width, channels), np.uint8)


def skew_check(sample_paths: Sequence[str], image_shape: Sequence[int], schema,
               training_statistics, threshold: float, minimum: int) -> Check:
    from imgpipe.components.image_example_gen import encoding
    from imgpipe.components.validation_gate import inprocess, schema_curation
    logged = [p for p in sample_paths if p]
    present = [p for p in logged if os.path.exists(p)]
    if len(present) < minimum:
        # Samples are files on the serving host: say so when they are logged but not here.
        missing = len(logged) - len(present)
        elsewhere = (f"; {missing} of the {len(logged)} logged sample files are missing on this "
                     "host (serving.samples_root)" if missing else "")
        return Check("input skew", SKIPPED, None, threshold,
                     f"{len(present)} sampled inputs in the window, fewer than {minimum} "
                     f"(serving.sample_rate keeps a share of them){elsewhere}")
    if training_statistics is None:
        return Check("input skew", SKIPPED, None, threshold,
                     "the training statistics recorded for this model are not readable")
    pixels = load_samples(present, image_shape)
    batch = encoding.examples_record_batch(pixels, None, [os.path.basename(p) for p in present],
                                           "uint8")
    watched = type(schema)()
    watched.CopyFrom(schema)
    for feature in watched.feature:
        if feature.name == encoding.IMAGE_FEATURE:
            feature.drift_comparator.jensen_shannon_divergence.threshold = threshold
    verdict = inprocess.validate(inprocess.statistics(batch, watched), watched,
                                 schema_curation.SERVING, baseline=training_statistics)
    divergence = verdict.drift.get(encoding.IMAGE_FEATURE, {}).get("value")
    if verdict.passed:
        return Check("input skew", OK, divergence, threshold,
                     f"{len(present)} sampled inputs match the curated schema and the training "
                     f"pixel distribution (JS divergence {divergence:.3f})" if divergence is not None
                     else f"{len(present)} sampled inputs match the curated schema")
    return Check("input skew", ALERT, divergence, threshold,
                 "; ".join(f.message for f in verdict.findings),
                 {"findings": [f.as_dict() for f in verdict.findings]})


def format_checks(checks: List[Check], header: str) -> str:
    lines = [header]
    for check in checks:
        lines.append(f"  {check.status:<7} {check.name:<19} {check.detail}")
        if check.name == "confidence" and check.extra.get("per_class"):
            baseline = check.extra.get("baseline_per_class") or {}
            for name, value in check.extra["per_class"].items():
                base = baseline.get(name)
                lines.append(f"          {name:<17} {value:.3f}"
                             + (f"   (evaluation {base:.3f})" if base is not None else ""))
    alerts = [c for c in checks if c.status == ALERT]
    lines.append(f"{len(alerts)} alert(s)" if alerts else "no alerts")
    return "\n".join(lines)
