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
