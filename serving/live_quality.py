"""Live quality: served predictions against the labels sent back for them.

Plain NumPy/SciPy over (predicted, label) pairs: accuracy with a Wilson
interval, per-class recall/F1, and the challenger against the champion — a
one-sided two-proportion z-test of "better by at least `margin`", with the
labels each side would need to decide it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

BETTER, NOT_BETTER, UNDECIDED = "BETTER", "NOT BETTER", "UNDECIDED"


@dataclasses.dataclass(frozen=True)
class Labelled:
    """One logged prediction with the label sent back for it."""
    variant: str             # champion | challenger
    model_uid: str
    predicted: str
    label: str
    confidence: float
    created_at: object = None
    prediction_id: str = ""
    shadow_of: Optional[str] = None   # a shadow answer: the champion's prediction id


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple:
    if trials == 0:
        return (0.0, 1.0)
    from scipy.stats import norm
    z = norm.ppf(0.5 + confidence / 2)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass
class Quality:
    labelled: int
    accuracy: Optional[float]
    accuracy_interval: tuple
    mean_confidence: Optional[float]
    per_class: Dict[str, Dict[str, Optional[float]]]     # recall, precision, f1, support
    predicted_share: Dict[str, float]


def quality(rows: Sequence[Labelled], class_names: Sequence[str], confidence: float = 0.95) -> Quality:
    predicted = np.array([r.predicted for r in rows], dtype=object)
    truth = np.array([r.label for r in rows], dtype=object)
    correct = int((predicted == truth).sum()) if len(rows) else 0
    per_class = {}
    for name in class_names:
        support, chosen = int((truth == name).sum()), int((predicted == name).sum())
        hits = int(((truth == name) & (predicted == name)).sum())
        per_class[name] = {"recall": hits / support if support else None,
                           "recall_interval": wilson_interval(hits, support, confidence) if support else None,
                           "precision": hits / chosen if chosen else None,
                           "f1": _f1(truth == name, predicted == name) if support else None,
                           "f1_interval": _f1_interval(truth == name, predicted == name, confidence)
                           if support else None,
                           "support": support}
    return Quality(len(rows), correct / len(rows) if rows else None,
                   wilson_interval(correct, len(rows), confidence),
                   float(np.mean([r.confidence for r in rows])) if rows else None, per_class,
                   {name: float((predicted == name).mean()) if rows else 0.0 for name in class_names})


def _f1(actual: np.ndarray, chosen: np.ndarray) -> float:
    hits = float((actual & chosen).sum())
    total = float(actual.sum() + chosen.sum())
    return 2 * hits / total if total else 0.0


def _f1_interval(actual: np.ndarray, chosen: np.ndarray, confidence: float,
                 resamples: int = 1000) -> tuple:
    """A percentile bootstrap interval (seeded: the same window gives the same interval)."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(actual), (resamples, len(actual)))
    hits = (actual[picks] & chosen[picks]).sum(axis=1)
    totals = actual[picks].sum(axis=1) + chosen[picks].sum(axis=1)
    scores = np.where(totals > 0, 2 * hits / np.maximum(totals, 1), 0.0)
    tail = (1 - confidence) / 2 * 100
    return (float(np.percentile(scores, tail)), float(np.percentile(scores, 100 - tail)))


@dataclasses.dataclass
class Comparison:
    decision: str
    champion_accuracy: Optional[float]
    challenger_accuracy: Optional[float]
    champion_labelled: int
    challenger_labelled: int
    difference: Optional[float]          # challenger - champion
    margin: float
    confidence: float
    p_value: Optional[float]             # H0: difference <= margin
    labels_needed: Optional[int]         # per variant, to decide the observed difference
    detail: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def labels_needed(p1: float, p2: float, margin: float, alpha: float, power: float = 0.8) -> Optional[int]:
    """Labels per variant for a one-sided z-test at `alpha` to see p2 - p1 > margin
    with `power`, if the true accuracies are p1 and p2 (None: no difference to see)."""
    from scipy.stats import norm
    effect = p2 - p1 - margin
    if effect <= 0:
        return None
    variance = max(p1 * (1 - p1) + p2 * (1 - p2), 1e-6)
    return int(math.ceil((norm.ppf(1 - alpha) + norm.ppf(power)) ** 2 * variance / effect ** 2))


def compare(champion: Sequence[bool], challenger: Sequence[bool], margin: float = 0.0,
            confidence: float = 0.95, minimum: int = 30) -> Comparison:
    """Is the challenger's accuracy better than the champion's by more than `margin`?
    `champion`/`challenger`: whether each labelled answer was right."""
    from scipy.stats import norm
    n1, n2 = len(champion), len(challenger)
    alpha = 1 - confidence
    if min(n1, n2) < minimum:
        return Comparison(UNDECIDED, _mean(champion), _mean(challenger), n1, n2,
                          None if not (n1 and n2) else _mean(challenger) - _mean(champion), margin,
                          confidence, None, minimum,
                          f"{n1} labelled champion and {n2} labelled challenger answers; at least "
                          f"{minimum} of each are needed before testing")
    p1, p2 = _mean(champion), _mean(challenger)
    difference = p2 - p1
    standard_error = math.sqrt(max(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2, 1e-12))
    p_value = float(norm.sf((difference - margin) / standard_error))
    needed = labels_needed(p1, p2, margin, alpha)
    numbers = (f"challenger {p2:.3f} on {n2} labels vs champion {p1:.3f} on {n1}: "
               f"{difference:+.3f} (margin {margin:g}, one-sided p = {p_value:.3g})")
    if p_value < alpha:
        return Comparison(BETTER, p1, p2, n1, n2, difference, margin, confidence, p_value, needed,
                          f"{numbers}: better at {confidence:.0%} confidence")
    if needed is None:
        return Comparison(NOT_BETTER, p1, p2, n1, n2, difference, margin, confidence, p_value, None,
                          f"{numbers}: not better by the margin; more labels would not change that "
                          "unless the accuracies move")
    more = max(0, needed - min(n1, n2))
    return Comparison(UNDECIDED, p1, p2, n1, n2, difference, margin, confidence, p_value, needed,
                      f"{numbers}: not yet significant; about {needed} labels per variant "
                      f"({more} more) would decide a difference this size with 80% power")


def _mean(values: Sequence[bool]) -> Optional[float]:
    return float(np.mean(values)) if len(values) else None


def by_variant(rows: Sequence[Labelled]) -> Dict[str, List[Labelled]]:
    out: Dict[str, List[Labelled]] = {}
    for row in rows:
        out.setdefault(row.variant, []).append(row)
    return out


def paired_outcomes(rows: Sequence[Labelled], champion_uid: str, challenger_uid: str) -> tuple:
    """(champion right/wrong, challenger right/wrong) on comparable traffic: for a
    shadow challenger the same requests (the champion's answers it shadowed);
    for a split one, the same window."""
    challenger_rows = [r for r in rows if r.model_uid == challenger_uid]
    champion_rows = [r for r in rows if r.model_uid == champion_uid and r.shadow_of is None]
    shadowed = {r.shadow_of for r in challenger_rows if r.shadow_of}
    if shadowed:
        champion_rows = [r for r in champion_rows if r.prediction_id in shadowed]
    return ([r.predicted == r.label for r in champion_rows],
            [r.predicted == r.label for r in challenger_rows])


def report(rows: Sequence[Labelled], class_names_of, champion_uid: Optional[str],
           margin: float, confidence: float, min_labels: int) -> dict:
    """Per model that answered (variant, uid): quality; and the challenger against
    the champion when both have labelled answers."""
    models = {}
    for row in rows:
        models.setdefault((row.variant, row.model_uid), []).append(row)
    out = {"labelled": len(rows), "models": [], "comparison": None}
    for (variant, uid), own in sorted(models.items()):
        found = quality(own, class_names_of(uid) or sorted({r.label for r in own}), confidence)
        out["models"].append({"variant": variant, "model_uid": uid, **dataclasses.asdict(found)})
    challengers = sorted({uid for variant, uid in models if variant == "challenger"})
    if champion_uid and challengers:
        champion, rival = paired_outcomes(rows, champion_uid, challengers[0])
        out["comparison"] = {"champion_uid": champion_uid, "challenger_uid": challengers[0],
                             **compare(champion, rival, margin, confidence, min_labels).as_dict()}
    return out


def format_report(found: dict) -> str:
    lines = [f"live quality: {found['labelled']} labelled predictions in the window"]
    for model in found["models"]:
        accuracy = model["accuracy"]
        low, high = model["accuracy_interval"]
        lines.append(f"  {model['variant']:<10} {model['model_uid']:<28} labelled {model['labelled']:>6}  "
                     + (f"accuracy {accuracy:.3f} [{low:.3f}, {high:.3f}]  mean confidence "
                        f"{model['mean_confidence']:.3f}" if accuracy is not None else "no labels"))
        for name, scores in model["per_class"].items():
            if scores["support"]:
                recall, f1 = scores["recall_interval"], scores["f1_interval"]
                lines.append(f"      {name:<16} recall {_num(scores['recall'])} [{recall[0]:.3f}, "
                             f"{recall[1]:.3f}]  F1 {_num(scores['f1'])} [{f1[0]:.3f}, {f1[1]:.3f}]"
                             f"  ({scores['support']} labelled)")
    if found["comparison"]:
        lines.append(f"  challenger vs champion: {found['comparison']['decision']}: "
                     f"{found['comparison']['detail']}")
    return "\n".join(lines)


def _num(value: Optional[float]) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def chart(rows: Sequence[Labelled], path: str, buckets: int = 12) -> str:
    """Accuracy and mean confidence per variant over the window (equal time buckets), as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    if rows:
        times = np.array([r.created_at.timestamp() for r in rows])
        edges = np.linspace(times.min(), times.max() + 1e-6, buckets + 1)
        centres = [dt.datetime.fromtimestamp((a + b) / 2, dt.timezone.utc)
                   for a, b in zip(edges[:-1], edges[1:])]
        for variant, own in sorted(by_variant(rows).items()):
            stamps = np.array([r.created_at.timestamp() for r in own])
            which = np.clip(np.digitize(stamps, edges) - 1, 0, buckets - 1)
            right = np.array([r.predicted == r.label for r in own], float)
            sure = np.array([r.confidence for r in own], float)
            present = [b for b in range(buckets) if (which == b).any()]
            top.plot([centres[b] for b in present], [right[which == b].mean() for b in present],
                     marker="o", label=variant)
            bottom.plot([centres[b] for b in present], [sure[which == b].mean() for b in present],
                        marker="o", label=variant)
    top.set_ylabel("labelled accuracy")
    bottom.set_ylabel("mean confidence")
    bottom.axhline(0.7, color="grey", linestyle=":", linewidth=1)
    top.legend(loc="lower left")
    top.set_title("live quality per variant")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
