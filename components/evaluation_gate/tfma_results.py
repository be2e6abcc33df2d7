"""Reading what TFMA measured (metrics and the confusion matrix)."""
from __future__ import annotations

import dataclasses
from typing import Dict

import numpy as np


@dataclasses.dataclass
class TfmaResult:
    accuracy: float
    example_count: int
    f1: Dict[int, float]
    precision: Dict[int, float]
    recall: Dict[int, float]
    confusion: np.ndarray            # [actual, predicted] counts
    validation_ok: bool


def read(output_path: str, num_classes: int) -> TfmaResult:
    import tensorflow_model_analysis as tfma
    accuracy, count = float("nan"), 0
    per_class: Dict[str, Dict[int, float]] = {"f1_score": {}, "precision": {}, "recall": {}}
    for metrics in tfma.load_metrics(output_path):
        if metrics.slice_key.single_slice_keys:
            continue  # overall slice only
        for item in metrics.metric_keys_and_values:
            name, value = item.key.name, item.value.double_value.value
            if name == "sparse_categorical_accuracy":
                accuracy = value
            elif name == "example_count":
                count = int(value)
            elif name in per_class and item.key.sub_key.HasField("class_id"):
                per_class[name][int(item.key.sub_key.class_id.value)] = value
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for plots in tfma.load_plots(output_path):
        if plots.slice_key.single_slice_keys:
            continue
        for item in plots.plot_keys_and_values:
            matrices = item.value.multi_class_confusion_matrix_at_thresholds.matrices
            if matrices:
                for entry in matrices[0].entries:
                    actual, predicted = entry.actual_class_id, entry.predicted_class_id
                    if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                        confusion[actual, predicted] += int(round(entry.num_weighted_examples))
    validation = tfma.load_validation_result(output_path)
    return TfmaResult(accuracy, count, per_class["f1_score"], per_class["precision"],
                      per_class["recall"], confusion, bool(validation.validation_ok))
