"""What one mistake row costs, and its verdict. Plain NumPy: no TensorFlow here.

Harm is an accuracy (or one class's recall) drop against the clean requests
of the same signature, beyond its threshold and beyond what chance explains.
The flip rate and the confidence are reported beside it: a mirrored image
changes many answers at the same accuracy, and a harmful mistake is often
answered as confidently as a clean one.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REFUSED, FLAGGED, HARMLESS, SILENT_HARM = "REFUSED", "FLAGGED", "HARMLESS", "SILENT HARM"
REFERENCE = "REFERENCE"   # the clean requests themselves
UNTESTED = "UNTESTED"     # the gate's time budget ran out before the row's first 10 inputs


@dataclasses.dataclass(frozen=True)
class Policy:
    max_accuracy_drop: float = 0.02
    max_class_recall_drop: float = 0.05
    accepted: Dict[str, str] = dataclasses.field(default_factory=dict)   # mistake -> reason
    screen: int = 0          # inputs a mistake is screened on first (0: the whole sample)


@dataclasses.dataclass
class Scores:
    accuracy: float
    class_recall: Dict[str, float]
    flip_rate: float
    mean_confidence: float
    calibration_error: float


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Confidence-binned |accuracy - confidence|, weighted by the bin's share."""
    return calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, bins)


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """The same, from top-1 confidences and whether each answer was right."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    if not len(confidence):
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def score(probabilities: np.ndarray, labels: np.ndarray, reference_ids: np.ndarray,
          class_names: Sequence[str]) -> Scores:
    predicted = probabilities.argmax(axis=1)
    recall = {name: float((predicted[labels == k] == k).mean()) if (labels == k).any() else float("nan")
              for k, name in enumerate(class_names)}
    return Scores(accuracy=float((predicted == labels).mean()), class_recall=recall,
                  flip_rate=float((predicted != reference_ids).mean()),
                  mean_confidence=float(probabilities.max(axis=1).mean()),
                  calibration_error=expected_calibration_error(probabilities, labels))


@dataclasses.dataclass
class Harm:
    """The accuracy drop and the largest class-recall drop against the clean
    requests, each with the one-sided p-value of McNemar's exact test on the
    same images (answers lost vs answers gained): a drop that a few images'
    noise explains is not harm."""
    accuracy_drop: float
    accuracy_p: float
    worst_class: str
    class_drop: float
    class_p: float
    harmful: bool


def _lost_p_value(clean_correct: np.ndarray, correct: np.ndarray) -> float:
    from scipy.stats import binomtest
    lost = int((clean_correct & ~correct).sum())
    gained = int((~clean_correct & correct).sum())
    if lost + gained == 0:
        return 1.0
    return float(binomtest(lost, lost + gained, 0.5, alternative="greater").pvalue)


def harm(clean_correct: np.ndarray, correct: np.ndarray, labels: np.ndarray,
         class_names: Sequence[str], policy: Policy, alpha: float = 0.05, rows: int = 1) -> Harm:
    """Harmful: accuracy, or some class's recall, fell beyond its threshold,
    significantly. Reported: that class, else the class that fell most.
    Bonferroni over every chance to see a drop: a row is one of `rows` tested
    mistakes (alpha / rows), each class one of its classes (alpha / rows /
    classes). Twenty-odd rows each at 0.05 would block a harmless model about
    one run in three."""
    alpha = alpha / max(1, rows)
    accuracy_drop = float(clean_correct.mean() - correct.mean()) if len(labels) else 0.0
    accuracy_p = _lost_p_value(clean_correct, correct)
    present = [(k, name) for k, name in enumerate(class_names) if (labels == k).any()]
    classes = []   # (harmful, drop, name, p)
    for k, name in present:
        members = labels == k
        drop = float(clean_correct[members].mean() - correct[members].mean())
        p = _lost_p_value(clean_correct[members], correct[members]) if drop > 0 else 1.0
        classes.append((drop > policy.max_class_recall_drop and p < alpha / len(present),
                        drop, name, p))
    harmful_class, class_drop, worst, class_p = max(classes, default=(False, 0.0, "", 1.0))
    harmful = harmful_class or (accuracy_drop > policy.max_accuracy_drop and accuracy_p < alpha)
    return Harm(accuracy_drop, accuracy_p, worst, class_drop, class_p, harmful)


# Screening is lenient on purpose: it only decides which rows are worth the
# whole sample, so it stops a row only when nothing hints at a drop.
SCREEN_ALPHA = 0.2
# A screened row is tested twice: at the screen (stopping there when harm is
# already beyond doubt, e.g. BGR's 13 points) and on the whole sample. The
# row's alpha is split between the two looks (Bonferroni): a tenth early,
# the rest at the end, so the false-alarm rate stays within alpha.
EARLY_ALPHA_SHARE = 0.1


def alphas(first: int, sample: int, alpha: float = 0.05) -> Tuple[float, float]:
    """(alpha at the first look, alpha at the last) of a row whose first look
    is at `first` of `sample` inputs, before the correction over rows and
    classes that harm() applies. A row that looks at the whole sample at once
    is looked at once."""
    if first < sample:
        return alpha * EARLY_ALPHA_SHARE, alpha * (1 - EARLY_ALPHA_SHARE)
    return 0.0, alpha


def worth_a_closer_look(clean_correct: np.ndarray, correct: np.ndarray, labels: np.ndarray,
                        class_names: Sequence[str]) -> bool:
    """On a screening sample: accuracy, or some class's recall, fell at all with
    one-sided p < SCREEN_ALPHA (uncorrected)."""
    if clean_correct.mean() > correct.mean() and _lost_p_value(clean_correct, correct) < SCREEN_ALPHA:
        return True
    for k in range(len(class_names)):
        members = labels == k
        if members.any() and clean_correct[members].mean() > correct[members].mean() \
                and _lost_p_value(clean_correct[members], correct[members]) < SCREEN_ALPHA:
            return True
    return False


def verdict(refusal: Optional[str], flags: List[str], found: Optional[Harm]) -> str:
    if refusal:
        return REFUSED
    if flags:
        return FLAGGED
    return SILENT_HARM if found.harmful else HARMLESS
