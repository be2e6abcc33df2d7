"""The fuzzer's time in the evaluation gate: at most a share of the evaluation's.

Each mistake row's first look gets as many inputs as every row left can
afford alike in three quarters of the time left; what the first looks leave
goes to the rows whose first look hints at harm, the most suggestive first.
The cost of an input is measured per kind of request as the rows run (the
first estimate is the parity check's pace on the same serving path), so
slow images (224 px photos) get fewer inputs a row and thumbnails their
whole screen and sample. How many inputs each row used is in its report.
Plain Python: unit tested with a fake clock.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

# Below this many inputs no drop can be significant once the alpha is shared
# over twenty-odd rows (losing all 10: p = 0.5**10 = 0.001): a first look gets
# them, or the row is not sent at all (UNTESTED) once the time left cannot pay
# for them.
MIN_INPUTS = 10
# The pace plans for this share of the budget: the rows that set an input's
# cost are not the last ones (16-bit and RGBA PNGs, at the end, cost twice a
# JPEG's input), and a row's last call can overshoot its share.
PLANNED = 0.9
# The first looks of all rows share this part of the time left; the rest
# goes to the rows whose first look hints at harm.
FIRST_LOOKS = 0.75
# Images up to 64x64 (CIFAR-10, the quickstart) are fuzzed whole in about a
# quarter of the evaluation's time (0.22 in a local run, 0.26 in a fresh
# process); a 224 px photo costs the fuzzer ~20 network passes where the
# evaluation makes two.
THUMBNAIL_PIXELS = 64 * 64
AUTO_SHARE = 0.25


def is_thumbnail(spec) -> bool:
    return spec.height * spec.width <= THUMBNAIL_PIXELS


def share_for(setting, spec) -> float:
    """fuzz.max_evaluation_share as the gate applies it: "auto" is AUTO_SHARE
    for images larger than thumbnails and none for thumbnails (every row its
    screen and sample: the same verdicts on any machine)."""
    if setting != "auto":
        return float(setting)
    return 0.0 if is_thumbnail(spec) else AUTO_SHARE


@dataclasses.dataclass(frozen=True)
class Budget:
    seconds: float                 # the fuzzer's time: the share of the evaluation's
    seconds_per_input: float       # first estimate of an input's cost (the parity check's)
    evaluation_seconds: float = 0.0
    share: float = 0.0
    started: Optional[float] = None   # perf_counter() when the fuzzer started (None: at the first row)

    def summary(self) -> dict:
        return {"share": self.share, "evaluation_seconds": round(self.evaluation_seconds, 2),
                "seconds": round(self.seconds, 2),
                "first_seconds_per_input": round(self.seconds_per_input, 5)}


def budget_for(share: float, evaluation_seconds: float, parity_seconds: float,
               parity_inputs: int, started: Optional[float] = None) -> Optional[Budget]:
    """None when there is no limit (share 0) or nothing to measure it against."""
    if share <= 0 or evaluation_seconds <= 0 or parity_inputs <= 0:
        return None
    return Budget(share * evaluation_seconds, parity_seconds / parity_inputs,
                  evaluation_seconds, share, started)


class Pace:
    """How many inputs a row's first look (`first_look`, then `looked`) and its
    further look (`more`, then `spent`) may use. `kinds`: what each row whose
    first look is still to come sends ("pixels" or "bytes"), in order: an
    encoded request costs more (Pillow's encode, the graph's decode)."""

    def __init__(self, budget: Optional[Budget], kinds: Sequence[str],
                 clock: Callable[[], float] = time.perf_counter):
        self.budget, self.kinds, self.clock = budget, list(kinds), clock
        self.ends = math.inf if budget is None else \
            (clock() if budget.started is None else budget.started) + PLANNED * budget.seconds
        self._spent: Dict[str, Tuple[float, int]] = {}   # kind -> (seconds, inputs asked)

    def rate(self, kind: str) -> float:
        """Seconds an input of this kind costs: measured, else the first estimate."""
        seconds, inputs = self._spent.get(kind, (0.0, 0))
        return seconds / inputs if inputs else self.budget.seconds_per_input

    def _affordable(self, seconds: float, rate: float) -> int:
        return int(max(0.0, seconds) / rate) if rate > 0 else 2 ** 62

    def first_look(self, wanted: int) -> int:
        """The next row's first look: as many inputs as every row left can afford
        alike in FIRST_LOOKS of the time left (the rest: further looks), at
        least MIN_INPUTS; 0 (not sent) when the time left cannot pay for those."""
        if self.budget is None:
            return wanted
        left = self.ends - self.clock()
        if self._affordable(left, self.rate(self.kinds[0])) < min(wanted, MIN_INPUTS):
            return 0
        cost = sum(self.rate(kind) for kind in self.kinds)   # one input for each row left
        return min(wanted, max(MIN_INPUTS, self._affordable(FIRST_LOOKS * left, cost)))

    def looked(self, kind: str, asked: int, seconds: float) -> None:
        """The next row's first look is done: it asked the model `asked` new
        inputs in `seconds` (0: its time says nothing of an input's cost)."""
        self.kinds.pop(0)
        self.spent(kind, asked, seconds)

    def more(self, kind: str, have: int, wanted: int) -> int:
        """How far a row that has `have` inputs may go in the time left."""
        if self.budget is None:
            return wanted
        return min(wanted, have + self._affordable(self.ends - self.clock(), self.rate(kind)))

    def spent(self, kind: str, asked: int, seconds: float) -> None:
        """`seconds` for `asked` new inputs of this kind (0: says nothing of the cost)."""
        if asked:
            spent, inputs = self._spent.get(kind, (0.0, 0))
            self._spent[kind] = (spent + seconds, inputs + asked)
