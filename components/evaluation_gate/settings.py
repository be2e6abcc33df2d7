"""EvaluationGate's parameters."""
from __future__ import annotations

from typing import Dict, List

from imgpipe.components.settings import ComponentSettings
from imgpipe.contract import ImageSpec


class EvaluationSettings(ComponentSettings):
    class_names: List[str]
    f1_floors: Dict[str, float]          # per class, overrides applied
    accuracy_floor: float
    split: str                           # the evaluation split
    image: ImageSpec
    max_accuracy_gap: float              # serving parity
    max_disagreement: float
    max_accuracy_drop: float             # no regression against the champion
    max_flip_rate: float = 1.0           # answers changed from the champion's, same inputs
    max_calibration_error: float = 1.0   # expected calibration error of the served answers
    fuzz_enabled: bool = True            # client mistakes (components/fuzzer)
    fuzz_sample: int = 1000
    fuzz_screen: int = 250
    fuzz_max_evaluation_share: float = 0.0    # 0: no time budget
    fuzz_max_accuracy_drop: float = 0.02
    fuzz_max_class_recall_drop: float = 0.05
    fuzz_accepted: Dict[str, str] = {}
    monitor_min_mean_confidence: float = 0.7   # would `imgpipe monitor` raise a mistake?
    monitor_pixel_js_threshold: float = 0.1
    metadata_path: str = ""              # a local run's ML Metadata: the Evaluator's time, read there
