"""The fuzzer's table, its blocking failures, its JSON and its chart."""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence

from imgpipe.components.fuzzer import scoring
from imgpipe.components.fuzzer.budget import Budget
from imgpipe.components.fuzzer.fuzz import Row

FUZZ_JSON = "fuzz_report.json"
FUZZ_PNG = "fuzz_accuracy.png"


def failures(rows: Sequence[Row]) -> List[str]:
    """One line per mistake the model accepts silently at a cost, not listed as accepted."""
    out = []
    for row in rows:
        if row.blocks:
            harm = row.harm
            worst = (f", class {harm.worst_class} recall -{harm.class_drop * 100:.1f} points"
                     if harm.worst_class and harm.class_drop > 0 else "")
            out.append(f"fuzz: {row.mistake} ({row.description}) is accepted silently and costs "
                       f"{harm.accuracy_drop * 100:.1f} accuracy points{worst} on {row.images} "
                       "images; refuse it where the client sends it, or list it in [fuzz.accepted] "
                       "with a reason")
    return out


def _cell(row: Row) -> str:
    if row.scores is None:
        return f"{'':>8} {'':>6} {'':>5} {'':>5}  {row.serve.split(';')[0]}"   # all of it: the JSON"
    s, harm = row.scores, row.harm
    worst = f"{harm.worst_class} -{harm.class_drop * 100:.0f}" if harm.class_drop > 0 else ""
    note = f"  accepted: {row.accepted_reason}" if row.accepted_reason and \
        row.verdict == scoring.SILENT_HARM else ""
    if row.flagged_by:
        note += "  flagged by " + ", ".join(flag.split(":")[0] for flag in row.flagged_by)
    return (f"{s.accuracy:>8.3f} {s.flip_rate:>6.1%} {s.mean_confidence:>5.2f} "
            f"{s.calibration_error:>5.3f}  {worst}{note}")


def format_table(rows: Sequence[Row], budget: Optional[Budget] = None,
                 seconds: Optional[float] = None) -> str:
    most = max((row.images for row in rows if row.scores is not None), default=0)
    paced = (f"; time budget {budget.share:g} x {budget.evaluation_seconds:.1f} s of evaluation = "
             f"{budget.seconds:.1f} s, used {seconds:.1f} s" if budget and seconds is not None else "")
    untested = sum(row.verdict == scoring.UNTESTED for row in rows)
    paced += f"; {untested} untested, no time left for them" if untested else ""
    lines = [f"client mistakes (up to {most} evaluation inputs each{paced}; harm: significant "
             "drop beyond the thresholds):",
             f"{'mistake':<26} {'sends':<6} {'verdict':<11} {'inputs':>6} {'accuracy':>8} "
             f"{'flips':>6} {'conf':>5} {'ECE':>5}  worst class recall / refusal"]
    for row in rows:
        inputs = row.images if row.scores is not None else ""
        lines.append(f"{row.mistake:<26} {row.sends:<6} {row.verdict:<11} {inputs:>6} {_cell(row)}")
    return "\n".join(lines)


def to_json(rows: Sequence[Row]) -> str:
    return json.dumps([row.as_dict() for row in rows], indent=2)


def chart(rows: Sequence[Row], path: str) -> None:
    """Accuracy and mean confidence per accepted mistake; refused ones are listed, not drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tfx.dsl.io import fileio

    fileio.makedirs(os.path.dirname(path))
    scored = [row for row in rows if row.scores is not None]
    colours = {scoring.SILENT_HARM: "tab:red", scoring.HARMLESS: "tab:green",
               scoring.REFERENCE: "tab:blue", scoring.FLAGGED: "tab:orange"}
    figure, axes = plt.subplots(figsize=(max(6.0, 0.45 * len(scored) + 2), 4.5))
    positions = range(len(scored))
    axes.bar(positions, [row.scores.accuracy for row in scored],
             color=[colours.get(row.verdict, "grey") for row in scored], label="accuracy")
    axes.plot(positions, [row.scores.mean_confidence for row in scored], "k.", label="mean confidence")
    axes.set_xticks(positions, [row.mistake for row in scored], rotation=60, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_title("Accepted client mistakes (red: silent harm, green: harmless, blue: clean)")
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    with fileio.open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
