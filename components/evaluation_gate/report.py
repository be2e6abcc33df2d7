"""The evaluation report: table (text, JSON), confusion matrix and F1 charts (PNG)."""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from imgpipe.components.evaluation_gate.decisions import Decision, format_table

REPORT_TEXT = "evaluation_report.txt"
REPORT_JSON = "evaluation_report.json"
CONFUSION_PNG = "confusion_matrix.png"
F1_PNG = "per_class_f1.png"


def write(directory: str, decision: Decision, confusion: np.ndarray,
          class_names: Sequence[str], serving_baseline: Optional[dict] = None) -> Dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tfx.dsl.io import fileio

    paths = {name: os.path.join(directory, name)
             for name in (REPORT_TEXT, REPORT_JSON, CONFUSION_PNG, F1_PNG)}
    fileio.makedirs(directory)
    with fileio.open(paths[REPORT_TEXT], "w") as handle:
        handle.write(format_table(decision) + "\n")
    with fileio.open(paths[REPORT_JSON], "w") as handle:
        handle.write(json.dumps({**decision.as_dict(), "confusion_matrix": confusion.tolist(),
                                 "class_names": list(class_names),
                                 "serving_baseline": serving_baseline}, indent=2) + "\n")

    size = max(4.0, 0.6 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(confusion, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    for (i, j), count in np.ndenumerate(confusion):
        axes.text(j, i, str(count), ha="center", va="center",
                  color="white" if count > confusion.max() / 2 else "black", fontsize=8)
    axes.set_title("Confusion matrix (evaluation split)")
    figure.tight_layout()
    figure.savefig(paths[CONFUSION_PNG], dpi=100)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(max(5.0, 0.7 * len(class_names) + 2), 4))
    f1 = [0.0 if np.isnan(r.f1) else r.f1 for r in decision.rows]
    colors = ["tab:green" if r.passed else "tab:red" for r in decision.rows]
    axes.bar(range(len(f1)), f1, color=colors)
    for index, row in enumerate(decision.rows):
        axes.hlines(row.floor, index - 0.4, index + 0.4, colors="black", linestyles="dashed")
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel("F1 (argmax)")
    axes.set_title("Per-class F1; dashed: floor")
    figure.tight_layout()
    figure.savefig(paths[F1_PNG], dpi=100)
    plt.close(figure)
    return paths
