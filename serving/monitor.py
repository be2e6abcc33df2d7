"""`imgpipe monitor`: what is served, against what was evaluated and trained on.

Three checks over a window of the prediction log, each OK, ALERT or SKIPPED:

- confidence: the mean top-1 confidence (alert below a floor, 0.7 as in the
  source article), with per-class means beside the evaluation baseline;
- class distribution: L-infinity distance between the predicted-class
  distribution and the one the served path produced on the evaluation split;
- input skew: TFDV statistics of the sampled inputs, decoded by the same
  TensorFlow ops as serving, validated against the curated schema and the
  training statistics. That check is the validation gate's code, so it lives
  there (components/validation_gate/serving_skew.py); this module keeps the
  checks that need only the prediction log.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
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


# Normalised distance (channel means / 255, confidence) below which traffic is
# taken for clean: a few grey levels, a few confidence points.
FINGERPRINT_NOISE = 0.03


def _distance(fingerprint: dict, means: Sequence[float], confidence: float) -> float:
    own = np.array(fingerprint["channel_means"]) / 255.0
    seen = np.array(means[:len(own)]) / 255.0
    return float(np.sqrt(((own - seen) ** 2).sum() + (fingerprint["mean_confidence"][0] - confidence) ** 2))


def client_mistake_check(means: Optional[Sequence[float]], confidences: Sequence[float],
                         fuzz_report: Optional[List[dict]], minimum: int) -> Check:
    """The window's inputs (per-channel means of the sampled inputs) and answers
    (mean confidence) against the fuzzer's fingerprint of each client mistake
    the model accepts: the nearest one is named when it is nearer than clean traffic."""
    name = "client mistake"
    rows = [r for r in (fuzz_report or []) if r.get("fingerprint")]
    clean = [r for r in rows if r["verdict"] == "REFERENCE" and r["sends"] == "pixels"] or \
        [r for r in rows if r["verdict"] == "REFERENCE"]
    if not rows or not clean:
        return Check(name, SKIPPED, None, FINGERPRINT_NOISE, "the model's registry row has no "
                     "fuzz report with fingerprints (pushed before revision 0004)")
    if means is None or len(confidences) < minimum:
        return Check(name, SKIPPED, None, FINGERPRINT_NOISE,
                     f"{len(confidences)} predictions and no sampled inputs to compare")
    confidence = float(np.mean(confidences))
    to_clean = _distance(clean[0]["fingerprint"], means, confidence)
    reference = clean[0]["fingerprint"]
    # Mistakes that traffic could be told from clean by (a re-encoded JPEG cannot).
    accepted = [r for r in rows if r["verdict"] not in ("REFERENCE", "REFUSED") and _distance(
        r["fingerprint"], reference["channel_means"], reference["mean_confidence"][0])
        > 2 * FINGERPRINT_NOISE]
    nearest = min(accepted, key=lambda r: _distance(r["fingerprint"], means, confidence), default=None)
    seen = "channel means " + "/".join(f"{v:.0f}" for v in means) + f", confidence {confidence:.2f}"
    if nearest is None or to_clean <= FINGERPRINT_NOISE or \
            _distance(nearest["fingerprint"], means, confidence) >= to_clean:
        return Check(name, OK, to_clean, FINGERPRINT_NOISE, f"inputs look like clean traffic ({seen})")
    swapped = " — channel order looks swapped (R and B exchanged)" if nearest["mistake"] == "BGR" else ""
    return Check(name, ALERT, to_clean, FINGERPRINT_NOISE,
                 f"inputs look like \"{nearest['mistake']}\" ({nearest['description']}){swapped}: "
                 f"{seen}; clean traffic on the evaluation split had channel means "
                 + "/".join(f"{v:.0f}" for v in clean[0]["fingerprint"]["channel_means"])
                 + f" (the fuzzer's verdict for that mistake: {nearest['verdict']})",
                 {"mistake": nearest["mistake"]})


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
