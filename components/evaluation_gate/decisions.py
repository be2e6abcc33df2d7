"""Blessing decisions and the per-class table; pure functions.

A model is blessed only if overall accuracy and every class's F1 (on the
argmax) meet their floors AND the served path scores what evaluation scored.
Each failure is one line: what, value, floor.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# Float slack for the no-regression margin: 0.96 - 0.95 is 0.010000000000000009,
# so a drop of exactly the allowed margin would otherwise be refused.
DROP_TOLERANCE = 1e-9


@dataclasses.dataclass
class ClassRow:
    name: str
    precision: float
    recall: float
    f1: float
    support: int
    floor: float

    @property
    def passed(self) -> bool:
        return self.support > 0 and not math.isnan(self.f1) and self.f1 >= self.floor


@dataclasses.dataclass
class Parity:
    evaluated_accuracy: float      # TFMA's
    served_accuracy: float         # the serving path's, on the original inputs
    disagreement: float            # fraction of images where the two paths' classes differ
    images: int
    serving_path: str              # "serving_bytes" or "serving_default"
    # The served path's predictions on the evaluation inputs (not in the report).
    served_class_ids: List[int] = dataclasses.field(default_factory=list, repr=False)
    served_confidences: List[float] = dataclasses.field(default_factory=list, repr=False)
    # [sample, classes]: the fuzzer's sample on this path, its clean reference (not in the report).
    served_probabilities: Any = dataclasses.field(default=None, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("served_class_ids", "served_confidences", "served_probabilities")}


def serving_baseline(class_ids: Sequence[int], confidences: Sequence[float],
                     class_names: Sequence[str]) -> dict:
    """What `imgpipe monitor` compares live predictions with: the served
    path's confidence (mean, per predicted class) and predicted-class
    distribution on the evaluation inputs."""
    ids, conf = np.asarray(class_ids, int), np.asarray(confidences, float)
    total = max(len(ids), 1)
    return {
        "images": int(len(ids)),
        "mean_confidence": float(conf.mean()) if len(conf) else float("nan"),
        "per_class_confidence": {name: float(conf[ids == i].mean()) for i, name in enumerate(class_names)
                                 if (ids == i).any()},
        "predicted_distribution": {name: float((ids == i).sum() / total)
                                   for i, name in enumerate(class_names)},
    }


@dataclasses.dataclass
class ChampionComparison:
    """The registry's champion, scored on this run's evaluation inputs."""
    model_uid: str
    version: int
    champion_accuracy: Optional[float]   # None: not comparable (see `problem`)
    candidate_accuracy: float            # the candidate's served accuracy, same inputs
    max_drop: float
    problem: str = ""
    # Share of the inputs whose answer changes from the champion's (overall and
    # per true class): an upgrade at the same accuracy can still answer differently.
    flip_rate: Optional[float] = None
    class_flip_rates: Dict[str, float] = dataclasses.field(default_factory=dict)
    max_flip_rate: float = 1.0

    @property
    def failure(self) -> Optional[str]:
        name = f"champion {self.model_uid} (version {self.version})"
        if self.problem:
            return f"no-regression: cannot compare with {name}: {self.problem}"
        drop = self.champion_accuracy - self.candidate_accuracy
        if drop > self.max_drop + DROP_TOLERANCE:
            return (f"no-regression: accuracy {self.candidate_accuracy:.4f} is {drop * 100:.1f} "
                    f"points below {name} at {self.champion_accuracy:.4f} on the same evaluation "
                    f"inputs (allowed drop {self.max_drop * 100:.1f})")
        if self.flip_rate is not None and self.flip_rate > self.max_flip_rate + DROP_TOLERANCE:
            worst = max(self.class_flip_rates, key=self.class_flip_rates.get, default="")
            return (f"flip rate: {self.flip_rate:.1%} of the evaluation inputs get another answer "
                    f"than from {name} (ceiling {self.max_flip_rate:.1%}"
                    + (f"; most in class {worst}: {self.class_flip_rates[worst]:.1%})" if worst else ")"))
        return None


def flip_rates(candidate_ids: np.ndarray, champion_ids: np.ndarray, labels: np.ndarray,
               class_names: Sequence[str]) -> Tuple[float, Dict[str, float]]:
    """Overall and per-true-class share of answers that differ between the two models."""
    flips = candidate_ids != champion_ids
    per_class = {name: float(flips[labels == k].mean()) for k, name in enumerate(class_names)
                 if (labels == k).any()}
    return (float(flips.mean()) if len(flips) else 0.0), per_class


@dataclasses.dataclass
class Decision:
    blessed: bool
    failures: List[str]
    accuracy: float
    accuracy_floor: float
    rows: List[ClassRow]
    parity: Optional[Parity]
    champion: Optional[ChampionComparison] = None
    fuzz: Optional[List[dict]] = None    # the client-mistake rows (components/fuzzer)
    fuzz_table: str = ""
    fuzz_seconds: Optional[float] = None   # the fuzzer's wall time inside the gate
    fuzz_budget: Optional[dict] = None     # its time budget (components/fuzzer/budget.py)
    calibration: Optional[Tuple[float, float]] = None   # (served ECE, ceiling)

    def as_dict(self) -> dict:
        return {"blessed": self.blessed, "failures": self.failures, "accuracy": self.accuracy,
                "accuracy_floor": self.accuracy_floor,
                "classes": [dataclasses.asdict(r) | {"passed": r.passed} for r in self.rows],
                "parity": self.parity.summary() if self.parity else None,
                "champion": dataclasses.asdict(self.champion) if self.champion else None,
                "calibration_error": self.calibration[0] if self.calibration else None,
                "max_calibration_error": self.calibration[1] if self.calibration else None,
                "fuzz": self.fuzz, "fuzz_seconds": self.fuzz_seconds,
                "fuzz_budget": self.fuzz_budget}


def class_rows(class_names: Sequence[str], confusion: np.ndarray, f1: Dict[int, float],
               precision: Dict[int, float], recall: Dict[int, float],
               floors: Dict[str, float]) -> List[ClassRow]:
    """Rows from TFMA's per-class metrics; support from its confusion matrix."""
    support = confusion.sum(axis=1) if confusion.size else np.zeros(len(class_names))
    return [ClassRow(name, precision.get(i, float("nan")), recall.get(i, float("nan")),
                     f1.get(i, float("nan")), int(support[i]) if i < len(support) else 0,
                     floors[name]) for i, name in enumerate(class_names)]


def decide(accuracy: float, accuracy_floor: float, rows: List[ClassRow],
           parity: Optional[Parity], max_accuracy_gap: float, max_disagreement: float,
           champion: Optional[ChampionComparison] = None, fuzz_failures: Sequence[str] = (),
           calibration: Optional[Tuple[float, float]] = None) -> Decision:
    """`champion`: None when the registry has none (the first model); `fuzz_failures`:
    the client mistakes the model accepts silently at a cost."""
    failures = []
    if math.isnan(accuracy) or accuracy < accuracy_floor:
        failures.append(f"accuracy: {accuracy:.4f} below the floor {accuracy_floor:.2f}")
    for row in rows:
        if row.support == 0 or math.isnan(row.f1):
            failures.append(f"class {row.name}: no examples in the evaluation split — F1 is "
                            f"undefined (floor {row.floor:.2f}); add examples of it or drop the class")
        elif row.f1 < row.floor:
            failures.append(f"class {row.name}: F1 {row.f1:.4f} below its floor {row.floor:.2f} "
                            f"(precision {row.precision:.3f}, recall {row.recall:.3f}, "
                            f"support {row.support})")
    if parity is None:
        failures.append("parity: the serving path was not checked")
    else:
        gap = abs(parity.served_accuracy - parity.evaluated_accuracy)
        if gap > max_accuracy_gap:
            failures.append(
                f"parity: {parity.serving_path} scores {parity.served_accuracy:.4f} on the original "
                f"inputs but evaluation measured {parity.evaluated_accuracy:.4f} (gap "
                f"{gap * 100:.1f} points, allowed {max_accuracy_gap * 100:.1f}) — the served "
                "preprocessing differs from the evaluated one")
        if parity.disagreement > max_disagreement:
            failures.append(
                f"parity: {parity.serving_path} and the evaluated path disagree on "
                f"{parity.disagreement:.1%} of {parity.images} images "
                f"(allowed {max_disagreement:.1%})")
    if champion is not None and champion.failure:
        failures.append(champion.failure)
    if calibration is not None and calibration[0] > calibration[1]:
        failures.append(f"calibration: expected calibration error {calibration[0]:.3f} of the "
                        f"served answers is above the ceiling {calibration[1]:.3f} (the "
                        "confidences clients act on are off)")
    failures.extend(fuzz_failures)
    return Decision(not failures, failures, accuracy, accuracy_floor, rows, parity, champion,
                    calibration=calibration)


def format_table(decision: Decision) -> str:
    lines = [f"{'class':<16} {'precision':>9} {'recall':>7} {'F1':>7} {'floor':>6} {'support':>8}"]
    for row in decision.rows:
        mark = "" if row.passed else "  <- below floor" if row.support else "  <- missing"
        lines.append(f"{row.name:<16} {row.precision:>9.3f} {row.recall:>7.3f} {row.f1:>7.3f} "
                     f"{row.floor:>6.2f} {row.support:>8d}{mark}")
    lines.append(f"{'accuracy':<16} {decision.accuracy:>33.3f} {decision.accuracy_floor:>6.2f} "
                 f"{sum(r.support for r in decision.rows):>8d}")
    if decision.parity:
        p = decision.parity
        lines.append(f"parity ({p.serving_path} on {p.images} original inputs): accuracy "
                     f"{p.served_accuracy:.4f} vs evaluated {p.evaluated_accuracy:.4f}; "
                     f"predictions differ on {p.disagreement:.2%}")
    champion = decision.champion
    if champion is None:
        lines.append("champion: none in the registry yet (no-regression check not needed)")
    elif champion.champion_accuracy is not None:
        lines.append(f"champion {champion.model_uid} (version {champion.version}): accuracy "
                     f"{champion.champion_accuracy:.4f} vs this model's "
                     f"{champion.candidate_accuracy:.4f} on the same inputs"
                     + (f"; {champion.flip_rate:.1%} of the answers differ (ceiling "
                        f"{champion.max_flip_rate:.0%})" if champion.flip_rate is not None else ""))
    if decision.calibration is not None:
        lines.append(f"calibration: expected calibration error {decision.calibration[0]:.3f} "
                     f"(ceiling {decision.calibration[1]:.3f})")
    if decision.fuzz_table:
        lines.append(decision.fuzz_table)
    verdict = "BLESSED" if decision.blessed else "NOT BLESSED"
    lines.append(verdict + ("" if decision.blessed else ":"))
    lines.extend(f"  {failure}" for failure in decision.failures)
    return "\n".join(lines)
