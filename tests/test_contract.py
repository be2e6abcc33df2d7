"""The image contract: one home for what training and serving must agree on."""
import ast
from pathlib import Path

import pytest

from conftest import REPO
from imgpipe.contract import ARTIFACTS, OUTPUTS, SIGNATURES, ImageSpec

ROOMS = ("imgpipe", "pipeline", "components", "registry", "serving")
# Distinctive names only: "image" or "label" are common words in any file.
SPELLED_ONCE = {SIGNATURES.pixels, SIGNATURES.bytes, SIGNATURES.examples, SIGNATURES.transform,
                ARTIFACTS.serving_model, ARTIFACTS.training_record, ARTIFACTS.push_record,
                "image_xf", ImageSpec.RECORD_KEY}


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_module_outside_the_contract_spells_its_names():
    found = [f"{path.relative_to(REPO)}:{line}: {value!r}"
             for room in ROOMS for path in sorted((REPO / room).rglob("*.py"))
             if path.name != "pyfunc_model.py"          # runs without imgpipe; checked below
             for line, value in _string_constants(path) if value in SPELLED_ONCE]
    assert found == []


def test_the_mlflow_model_file_spells_the_contract_names_exactly():
    from imgpipe.registry import pyfunc_model
    assert pyfunc_model.BYTES_SIGNATURE == SIGNATURES.bytes
    assert pyfunc_model.BYTES_INPUT == SIGNATURES.bytes_input
    assert (pyfunc_model.PROBABILITIES, pyfunc_model.CLASS_ID, pyfunc_model.CLASS_NAME) == (
        OUTPUTS.probabilities, OUTPUTS.class_id, OUTPUTS.class_name)


def test_image_spec_round_trips_and_refuses_what_no_op_supports():
    spec = ImageSpec(224, 160, 3)
    assert ImageSpec.from_dict(spec.to_dict()) == spec and spec.shape == (224, 160, 3)
    assert spec.describe() == "224x160x3" and spec.values_per_image == 224 * 160 * 3
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 4"):
        ImageSpec(32, 32, 4)
    with pytest.raises(ValueError, match="resize_method must be one of"):
        ImageSpec(32, 32, 3, resize_method="lanczos")
    with pytest.raises(ValueError, match="unknown image spec keys \\['letterbox'\\]"):
        ImageSpec.from_dict({**spec.to_dict(), "letterbox": True})
    policies = ImageSpec(224, 160, 3, resize_method="area", aspect="pad", exif_orientation="apply")
    assert ImageSpec.from_dict(policies.to_dict()) == policies


def test_records_written_before_the_spec_existed_still_read():
    assert ImageSpec.from_record({"image_shape": [32, 32, 1]}) == ImageSpec(32, 32, 1)
    assert ImageSpec.from_record({"image_spec": ImageSpec(8, 8, 3).to_dict()}) == ImageSpec(8, 8, 3)
    with pytest.raises(KeyError):
        ImageSpec.from_record({"class_names": ["a"]})


def test_every_component_takes_one_settings_parameter():
    from tfx.types import standard_component_specs

    from imgpipe.components.champion_resolver.component import ChampionResolverSpec
    from imgpipe.components.curated_schema.component import CuratedSchemaSpec
    from imgpipe.components.evaluation_gate.component import EvaluationGateSpec
    from imgpipe.components.image_example_gen.component import ImageExampleGenSpec
    from imgpipe.components.registry_pusher.component import RegistryPusherSpec
    from imgpipe.components.validation_gate.component import ValidationGateSpec
    for spec in (ChampionResolverSpec, CuratedSchemaSpec, EvaluationGateSpec, RegistryPusherSpec,
                 ValidationGateSpec):
        assert set(spec.PARAMETERS) == {"settings"}, spec.__name__
    # ImageExampleGen keeps TFX's own FileBasedExampleGen parameters (its driver reads them).
    tfx_own = set(standard_component_specs.FileBasedExampleGenSpec.PARAMETERS)
    assert set(ImageExampleGenSpec.PARAMETERS) - tfx_own == {"settings"}
