"""The TFMA EvalConfig of imgpipe, built from the configuration; pure.

Overall accuracy floor, per-class F1 floors (a default and overrides by
class name) on the argmax prediction (`top_k: 1`; TFMA's F1Score otherwise
thresholds each probability at 0.5), example count and the multi-class
confusion matrix. Metrics are named by class_name, as TFMA 0.47 expects.
"""
from __future__ import annotations

import json
from typing import Dict, Sequence

from imgpipe.contract import OUTPUTS, SIGNATURES

LABEL_KEY = "label"
PREDICTION_KEY = OUTPUTS.probabilities
SIGNATURE = SIGNATURES.examples
ACCURACY = "SparseCategoricalAccuracy"
F1 = "F1Score"


def f1_floors(class_names: Sequence[str], default: float, overrides: Dict[str, float]) -> Dict[str, float]:
    unknown = sorted(set(overrides) - set(class_names))
    if unknown:
        raise ValueError(f"evaluation.f1_floors names unknown classes {unknown}; "
                         f"the classes are {list(class_names)}")
    return {name: float(overrides.get(name, default)) for name in class_names}


def build_eval_config(class_names: Sequence[str], accuracy_floor: float):
    import tensorflow_model_analysis as tfma
    metrics_specs = [
        tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            tfma.MetricConfig(class_name=ACCURACY, threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_floor}))),
        ]),
        # Per class, on the argmax. The per-class floors are applied by the
        # EvaluationGate from these values: TFMA's thresholds cannot address
        # a sub-key that combines class_id and top_k.
        tfma.MetricsSpec(
            binarize=tfma.BinarizationOptions(class_ids={"values": list(range(len(class_names)))}),
            metrics=[tfma.MetricConfig(class_name=name, config=json.dumps({"top_k": 1}))
                     for name in (F1, "Precision", "Recall")]),
    ]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=SIGNATURE, label_key=LABEL_KEY,
                                    prediction_key=PREDICTION_KEY)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=metrics_specs)
