"""Blessing decisions and the TFMA config, without a pipeline."""
import dataclasses
import json

import numpy as np
import pytest

from imgpipe.components.evaluation_gate import decisions, eval_config

NAMES = ["circle", "cross", "square", "triangle"]
GOOD_PARITY = decisions.Parity(0.95, 0.95, 0.0, 200, "serving_bytes")


def rows(f1, floors=None, support=(50, 50, 50, 50)):
    floors = floors or eval_config.f1_floors(NAMES, 0.7, {})
    confusion = np.diag(support)
    return decisions.class_rows(NAMES, confusion, dict(enumerate(f1)),
                                dict(enumerate(f1)), dict(enumerate(f1)), floors)


def decide(rows_, accuracy=0.9, parity=GOOD_PARITY):
    return decisions.decide(accuracy, 0.5, rows_, parity, max_accuracy_gap=0.005,
                            max_disagreement=0.005)


def test_good_model_is_blessed():
    decision = decide(rows([0.9, 0.95, 0.88, 0.91]))
    assert decision.blessed and decision.failures == []
    assert decisions.format_table(decision).splitlines()[-1] == "BLESSED"


def test_one_weak_class_is_named():
    decision = decide(rows([0.9, 0.95, 0.55, 0.91]))
    assert not decision.blessed
    assert decision.failures == [
        "class square: F1 0.5500 below its floor 0.70 (precision 0.550, recall 0.550, support 50)"]
    assert "<- below floor" in decisions.format_table(decision)


def test_per_class_overrides_raise_and_lower_the_bar():
    lowered = eval_config.f1_floors(NAMES, 0.7, {"square": 0.5})
    assert decide(rows([0.9, 0.95, 0.55, 0.91], lowered)).blessed
    raised = eval_config.f1_floors(NAMES, 0.7, {"cross": 0.99})
    assert decide(rows([0.9, 0.95, 0.88, 0.91], raised)).failures == [
        "class cross: F1 0.9500 below its floor 0.99 (precision 0.950, recall 0.950, support 50)"]
    with pytest.raises(ValueError, match="unknown classes \\['hexagon'\\]"):
        eval_config.f1_floors(NAMES, 0.7, {"hexagon": 0.5})


def test_a_class_missing_from_the_evaluation_split_is_a_named_failure():
    decision = decide(rows([0.9, 0.95, float("nan"), 0.91], support=(50, 50, 0, 50)))
    assert not decision.blessed
    assert decision.failures[0].startswith("class square: no examples in the evaluation split")


def test_accuracy_floor_and_parity():
    assert decide(rows([0.9] * 4), accuracy=0.4).failures == [
        "accuracy: 0.4000 below the floor 0.50"]
    broken = decisions.Parity(0.95, 0.25, 0.71, 200, "serving_bytes")
    failures = decide(rows([0.9] * 4), parity=broken).failures
    assert failures[0].startswith("parity: serving_bytes scores 0.2500 on the original inputs but "
                                  "evaluation measured 0.9500 (gap 70.0 points, allowed 0.5)")
    assert failures[1] == ("parity: serving_bytes and the evaluated path disagree on 71.0% of 200 images "
                           "(allowed 0.5%)")
    assert not decide(rows([0.9] * 4), parity=None).blessed
    json.dumps(decide(rows([0.9] * 4)).as_dict())


def test_eval_config_uses_argmax_f1_per_class():
    config = eval_config.build_eval_config(NAMES, 0.6)
    assert config.model_specs[0].signature_name == "serving_examples"
    assert config.model_specs[0].label_key == "label"
    overall, per_class = config.metrics_specs
    names = [m.class_name for m in overall.metrics]
    assert names == ["ExampleCount", "MultiClassConfusionMatrixPlot", "SparseCategoricalAccuracy"]
    assert overall.metrics[2].threshold.value_threshold.lower_bound.value == 0.6
    assert list(per_class.binarize.class_ids.values) == [0, 1, 2, 3]
    assert {m.class_name: json.loads(m.config) for m in per_class.metrics}["F1Score"] == {"top_k": 1}


def champion(champion_accuracy, candidate_accuracy=0.95, problem=""):
    return decisions.ChampionComparison("shapes-cnn-abc", 3, champion_accuracy,
                                        candidate_accuracy, max_drop=0.01, problem=problem)


def test_no_regression_against_the_champion():
    def decide_with(comparison):
        return decisions.decide(0.9, 0.5, rows([0.9] * 4), GOOD_PARITY, 0.005, 0.005, comparison)
    assert decide_with(None).blessed                       # first model: nothing to compare
    assert decide_with(champion(0.955)).blessed            # within the allowed drop
    assert decide_with(champion(0.90, 0.97)).blessed       # better
    worse = decide_with(champion(0.97, 0.93))
    assert worse.failures == [
        "no-regression: accuracy 0.9300 is 4.0 points below champion shapes-cnn-abc (version 3) "
        "at 0.9700 on the same evaluation inputs (allowed drop 1.0)"]
    assert "champion shapes-cnn-abc (version 3): accuracy 0.9700 vs this model's 0.9300" in \
        decisions.format_table(worse)
    unusable = decide_with(champion(None, problem="it predicts ['a', 'b'], this model [...]"))
    assert not unusable.blessed
    assert unusable.failures[0].startswith("no-regression: cannot compare with champion shapes-cnn-abc")
    json.dumps(worse.as_dict())


def test_a_drop_of_exactly_the_allowed_margin_passes():
    assert 0.96 - 0.95 > 0.01                              # the float error this guards against
    assert champion(0.96, 0.95).failure is None            # max_drop=0.01, exactly at the margin
    assert champion(0.96, 0.9499).failure.startswith("no-regression: accuracy 0.9499")


def test_flip_rate_against_the_champion_has_a_ceiling_and_names_the_class():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    champion_ids = labels.copy()
    candidate_ids = np.array([0, 0, 1, 1, 2, 2, 0, 0])     # class 3's answers all changed
    rate, per_class = decisions.flip_rates(candidate_ids, champion_ids, labels, NAMES)
    assert rate == 0.25 and per_class[NAMES[3]] == 1.0 and per_class[NAMES[0]] == 0.0
    comparison = decisions.ChampionComparison("shapes-cnn-abc", 3, 0.9, 0.9, max_drop=0.01,
                                              flip_rate=rate, class_flip_rates=per_class,
                                              max_flip_rate=0.2)
    assert comparison.failure == ("flip rate: 25.0% of the evaluation inputs get another answer than "
                                  f"from champion shapes-cnn-abc (version 3) (ceiling 20.0%; most in "
                                  f"class {NAMES[3]}: 100.0%)")
    assert dataclasses.replace(comparison, max_flip_rate=0.25).failure is None


def test_calibration_error_has_a_ceiling():
    def decide_with(calibration):
        return decisions.decide(0.9, 0.5, rows([0.9] * 4), GOOD_PARITY, 0.005, 0.005,
                                calibration=calibration)
    assert decide_with((0.05, 0.15)).blessed
    over = decide_with((0.2, 0.15))
    assert over.failures == ["calibration: expected calibration error 0.200 of the served answers is "
                             "above the ceiling 0.150 (the confidences clients act on are off)"]
    assert "calibration: expected calibration error 0.200 (ceiling 0.150)" in decisions.format_table(over)
    assert over.as_dict()["calibration_error"] == 0.2


def test_champion_with_other_classes_or_shape_is_not_compared():
    from imgpipe.components.evaluation_gate.executor import compare_with_champion
    from imgpipe.components.evaluation_gate.settings import EvaluationSettings
    from imgpipe.contract import ImageSpec
    settings = EvaluationSettings(
        class_names=NAMES, f1_floors={}, accuracy_floor=0.5, split="eval",
        image=ImageSpec(32, 32, 3), max_accuracy_gap=0.005, max_disagreement=0.005,
        max_accuracy_drop=0.01)
    record = {"model_uid": "old", "version": 1, "artifact_path": "/nowhere",
              "class_names": ["cat", "dog"], "image_spec": ImageSpec(32, 32, 3).to_dict()}
    assert compare_with_champion({"model_uid": None}, settings, None, GOOD_PARITY) is None
    other = compare_with_champion(record, settings, None, GOOD_PARITY)
    assert "a different label set needs its own registry.model_name" in other.failure
    reshaped = compare_with_champion({**record, "class_names": NAMES,
                                      "image_spec": ImageSpec(64, 64, 3).to_dict()},
                                     settings, None, GOOD_PARITY)
    assert "takes images of 64x64x3, this model 32x32x3" in reshaped.failure
    # A champion pushed before the image spec existed recorded only its shape.
    legacy = {key: value for key, value in record.items() if key != "image_spec"}
    legacy_reshaped = compare_with_champion({**legacy, "class_names": NAMES, "image_shape": [64, 64, 3]},
                                            settings, None, GOOD_PARITY)
    assert "takes images of 64x64x3" in legacy_reshaped.failure


def test_the_parity_check_keeps_probabilities_only_for_the_fuzzers_sample_in_its_order():
    """Bounded by the sample, not the split: the rows asked for, in the order asked."""
    import types

    import tensorflow as tf

    from imgpipe.components.evaluation_gate import parity
    from imgpipe.contract import OUTPUTS
    table = np.random.default_rng(0).dirichlet(np.ones(4), size=100).astype(np.float32)

    def signature(rows):
        chosen = table[rows.numpy()]
        return {OUTPUTS.probabilities: tf.constant(chosen), OUTPUTS.class_id: tf.argmax(chosen, -1)}

    inputs = types.SimpleNamespace(serving_path="path", served_batches=lambda: (
        {"rows": tf.range(start, min(start + 64, 100))} for start in range(0, 100, 64)))
    model = types.SimpleNamespace(signatures={"path": signature})
    ids, confidences, kept = parity.served_predictions(model, inputs, np.array([70, 5, 99, 0]))
    np.testing.assert_array_equal(kept, table[[70, 5, 99, 0]])
    np.testing.assert_array_equal(ids, table.argmax(axis=1))
    np.testing.assert_array_equal(confidences, table.max(axis=1))
    assert parity.served_predictions(model, inputs)[2] is None


def test_the_evaluators_time_is_its_execution_in_ml_metadata_even_when_its_inputs_were_cached(
        tmp_path):
    """A real ML Metadata store: the execution that produced the evaluation,
    registered then completed 0.3 s later. Its inputs' ages do not count (a
    re-run whose Trainer was cached hours ago once read hours here)."""
    import time

    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.types import standard_artifacts

    from imgpipe.components.evaluation_gate.executor import evaluator_seconds

    path = str(tmp_path / "metadata.sqlite")
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = path
    store = metadata_store.MetadataStore(connection)
    kind = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Evaluator"))
    artifact_kind = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="ModelEvaluation"))
    [execution_id] = store.put_executions([metadata_store_pb2.Execution(type_id=kind)])
    time.sleep(0.3)
    [artifact_id] = store.put_artifacts([metadata_store_pb2.Artifact(type_id=artifact_kind, uri="/e")])
    execution = store.get_executions_by_id([execution_id])[0]
    execution.last_known_state = metadata_store_pb2.Execution.COMPLETE
    store.put_execution(execution, [], [])                              # completed: 0.3 s later
    store.put_events([metadata_store_pb2.Event(artifact_id=artifact_id, execution_id=execution_id,
                                               type=metadata_store_pb2.Event.OUTPUT)])
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.id = artifact_id
    assert 0.25 <= evaluator_seconds(evaluation, path) < 5
    assert evaluator_seconds(evaluation, "") == 0.0                      # a cluster: no local store
    assert evaluator_seconds(evaluation, str(tmp_path / "none.sqlite")) == 0.0
    assert evaluator_seconds(standard_artifacts.ModelEvaluation(), path) == 0.0   # not recorded
