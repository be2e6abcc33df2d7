"""create_pipeline(config) without running it: what the definition carries."""
import json

from conftest import write_class_tree
from imgpipe.pipeline.config import load_config
from imgpipe.pipeline.pipeline import create_pipeline


def _curated_schema_settings(config, data):
    pipeline = create_pipeline(config, source=str(data))
    [component] = [c for c in pipeline.components if type(c).__name__ == "CuratedSchema"]
    return json.loads(component.exec_properties["settings"])


def test_an_edited_schema_changes_the_definition_not_only_its_path(tmp_path):
    """ImportSchemaGen's cache key is the path: an edited file would be served from the
    cache. CuratedSchema carries the text, so the edit is a new execution."""
    data = write_class_tree(tmp_path / "data", classes=("circle", "cross", "square", "triangle"))
    schema = tmp_path / "schemas" / "mine.pbtxt"
    schema.parent.mkdir()
    packaged = load_config("builtin:quickstart").schema_location
    schema.write_text(open(packaged).read())
    config = load_config(write_config(tmp_path))
    before = _curated_schema_settings(config, data)
    assert before["origin"] == "mine.pbtxt" and before["schema_text"] == schema.read_text()
    schema.write_text(schema.read_text().replace("threshold: 0.1", "threshold: 0.2"))
    after = _curated_schema_settings(config, data)
    assert after["schema_text"] != before["schema_text"]


def write_config(tmp_path):
    path = tmp_path / "imgpipe.toml"
    path.write_text("[pipeline]\noutput_root = 'runs'\n[validation]\nschema_file = 'schemas/mine.pbtxt'\n")
    return path


def test_a_schema_of_the_other_layout_is_refused_naming_both(tmp_path):
    """Image files are kept encoded; a pixel-layout schema (drafted from an .npz,
    say) cannot describe them, and the reverse."""
    import numpy as np
    import pytest

    from imgpipe.components.validation_gate import schema_curation
    from imgpipe.pipeline.pipeline import PipelineError

    data = write_class_tree(tmp_path / "data", classes=("circle", "cross", "square", "triangle"))
    pixels = schema_curation.curate(None, height=32, width=32, channels=3,
                                    class_names=["circle", "cross", "square", "triangle"],
                                    thresholds=schema_curation.DriftThresholds())
    from google.protobuf import text_format
    schema = tmp_path / "schemas" / "mine.pbtxt"
    schema.parent.mkdir()
    schema.write_text(text_format.MessageToString(pixels))
    config = load_config(write_config(tmp_path))
    with pytest.raises(PipelineError, match=r"data.source holds image files \(kept encoded\) but "
                                            r"the schema describes pixels; draft one"):
        create_pipeline(config, source=str(data))
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=np.zeros((8, 32, 32, 3), np.uint8), y=np.arange(8) % 4)
    create_pipeline(config, source=str(npz))          # the pixel schema fits arrays
    schema.write_text(open(load_config("builtin:quickstart").schema_location).read())
    with pytest.raises(PipelineError, match=r"holds arrays or records \(kept as pixels\) but the "
                                            r"schema describes encoded image files"):
        create_pipeline(load_config(write_config(tmp_path)), source=str(npz))
