"""TFX executor of EvaluationGate: TFMA's numbers + serving parity -> blessing."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from imgpipe.components.evaluation_gate import decisions, parity, report, tfma_results

MODEL_KEY = "model"
EXAMPLES_KEY = "examples"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
REPORT_KEY = "report"
SETTINGS_KEY = "settings"
BLESSED_PROPERTY = "blessed"   # TFX's ModelBlessing convention: 1 or 0


def is_blessed(blessing: types.Artifact) -> bool:
    """What the next stage (the Pusher) checks."""
    return bool(blessing.get_int_custom_property(BLESSED_PROPERTY))


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        settings = json.loads(exec_properties[SETTINGS_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        evaluation = artifact_utils.get_single_instance(input_dict[EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        report_artifact = artifact_utils.get_single_instance(output_dict[REPORT_KEY])

        class_names = settings["class_names"]
        measured = tfma_results.read(evaluation.uri, len(class_names))
        rows = decisions.class_rows(class_names, measured.confusion, measured.f1,
                                    measured.precision, measured.recall, settings["f1_floors"])
        split_dir = artifact_utils.get_split_uri([examples], settings["split"])
        checked = parity.check(
            path_utils.serving_model_path(model.uri), split_dir,
            examples.get_string_custom_property("input_base"), measured.accuracy,
            tuple(settings["image_shape"]))
        decision = decisions.decide(measured.accuracy, settings["accuracy_floor"], rows, checked,
                                    settings["max_accuracy_gap"], settings["max_disagreement"])
        report.write(report_artifact.uri, decision, measured.confusion, class_names)

        blessing.set_int_custom_property(BLESSED_PROPERTY, int(decision.blessed))
        blessing.set_string_custom_property("current_model", model.uri)
        blessing.set_string_custom_property("failures", json.dumps(decision.failures))
        marker = "BLESSED" if decision.blessed else "NOT_BLESSED"
        with fileio.open(os.path.join(blessing.uri, marker), "w") as handle:
            handle.write("\n".join(decision.failures) + "\n")
        report_artifact.set_int_custom_property(BLESSED_PROPERTY, int(decision.blessed))
