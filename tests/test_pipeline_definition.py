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


def test_a_schema_of_the_other_layout_is_re_curated_for_the_source(tmp_path):
    """Image files are kept encoded, arrays as pixels. A schema drafted from one
    kind checks the other in that kind's layout: an .npz against the preset's
    (encoded) schema meets the pixel checks, with the config's image shape."""
    import numpy as np
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format

    from imgpipe.components.validation_gate import schema_curation

    classes = ["circle", "cross", "square", "triangle"]
    data = write_class_tree(tmp_path / "data", classes=tuple(classes))
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=np.zeros((8, 32, 32, 3), np.uint8), y=np.arange(8) % 4)
    schema = tmp_path / "schemas" / "mine.pbtxt"
    schema.parent.mkdir()
    schema.write_text(open(load_config("builtin:quickstart").schema_location).read())
    config = load_config(write_config(tmp_path))

    as_given = _curated_schema_settings(config, data)
    assert as_given["origin"] == "mine.pbtxt" and as_given["schema_text"] == schema.read_text()
    pixels = _curated_schema_settings(config, npz)
    assert pixels["origin"] == "mine.pbtxt (pixel layout)"
    parsed = text_format.Parse(pixels["schema_text"], tfdv.load_schema_text(str(schema)).__class__())
    found = schema_curation.expectations(parsed)
    assert not found.encoded and (found.height, found.width, found.channels) == (32, 32, 3)
    assert found.class_names == classes
    names = {f.name for f in parsed.feature}
    assert "image" in names and "image_encoded" not in names and "brightness" in names
    # And back: the pixel schema, given image files, is re-curated to the encoded layout.
    schema.write_text(text_format.MessageToString(parsed))
    encoded = _curated_schema_settings(load_config(write_config(tmp_path)), data)
    assert encoded["origin"] == "mine.pbtxt (encoded layout)"
    assert "image_encoded" in encoded["schema_text"] and 'name: "image"\n' not in encoded["schema_text"]
