"""Source layouts, class folders and streaming .npz reads (no Beam)."""
import os

import numpy as np
import pytest

from conftest import write_class_tree
from imgpipe.components.image_example_gen import sources
from imgpipe.components.image_example_gen.sources import SourceError


def test_class_tree_is_one_split_to_hash(class_tree):
    layout = sources.discover_layout(str(class_tree))
    assert layout.format == "folders"
    assert layout.input_base == str(class_tree)
    assert layout.split_patterns == {"single_split": "*/*"}
    assert not layout.has_predefined_splits


@pytest.mark.parametrize("folders, patterns", [
    (["train", "val"], {"train": "train/*/*", "validation": "val/*/*"}),
    (["train", "val", "test"], {"train": "train/*/*", "validation": "val/*/*", "eval": "test/*/*"}),
    (["train", "test"], {"train": "train/*/*", "eval": "test/*/*"}),
    (["Train", "Validation", "EVAL"],
     {"train": "Train/*/*", "validation": "Validation/*/*", "eval": "EVAL/*/*"}),
    (["train", "valid"], {"train": "train/*/*", "validation": "valid/*/*"}),
    (["train"], {"train": "train/*/*"}),
])
def test_split_folders_become_splits(tmp_path, folders, patterns):
    for folder in folders:
        write_class_tree(tmp_path / "data" / folder, per_class=1)
    layout = sources.discover_layout(str(tmp_path / "data"))
    assert layout.split_patterns == patterns and layout.has_predefined_splits


@pytest.mark.parametrize("folders, message", [
    (["val", "test"], r"split folders \['test', 'val'\] but no train folder; the folder layouts read"),
    (["train", "val", "validation"], r"folders \['val', 'validation'\] are all the validation split"),
    (["train", "val", "cats"], r"split folders \['train', 'val'\] and also other folders \['cats'\]"),
])
def test_split_folder_layouts_that_cannot_be_read_say_why(tmp_path, folders, message):
    for folder in folders:
        write_class_tree(tmp_path / "data" / folder, per_class=1)
    with pytest.raises(SourceError, match=message):
        sources.discover_layout(str(tmp_path / "data"))


def test_missing_splits_are_carved_from_train_in_the_configured_proportions():
    configured = {"train": 0.7, "validation": 0.15, "eval": 0.15}
    assert sources.split_routes(["train", "validation", "eval"], configured, 1000) == {
        "train": {"train": 1}, "validation": {"validation": 1}, "eval": {"eval": 1}}
    routes = sources.split_routes(["train", "validation"], configured, 1000)
    assert routes == {"train": {"train": 824, "eval": 176}, "validation": {"validation": 1}}
    assert sources.output_splits(routes) == ["train", "validation", "eval"]
    # A split folder the configuration lacks is kept as a split of its own.
    routes = sources.split_routes(["train", "validation"], {"train": 0.8, "eval": 0.2}, 1000)
    assert routes == {"train": {"train": 800, "eval": 200}, "validation": {"validation": 1}}


def test_split_folders_must_hold_the_same_classes(tmp_path):
    write_class_tree(tmp_path / "train", per_class=1, classes=("ants", "bees", "wasps"))
    write_class_tree(tmp_path / "val", per_class=1, classes=("ants", "bees"))
    with pytest.raises(SourceError, match=r"disagree on the classes: .*val has no wasps"):
        sources.scan_class_folders([str(tmp_path / "train"), str(tmp_path / "val")], [])


def test_a_folder_without_class_folders_names_the_layouts(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="no class folders in .*the folder layouts read: class"):
        sources.scan_class_folders([str(tmp_path / "flat")], [])


def test_span_pattern_goes_into_the_split_pattern(tmp_path):
    for span in (1, 2):
        write_class_tree(tmp_path / "drops" / f"span-{span}")
    layout = sources.discover_layout(str(tmp_path / "drops" / "span-{SPAN}"))
    assert layout.input_base == str(tmp_path / "drops")
    assert layout.split_patterns == {"single_split": "span-{SPAN}/*/*"}


def test_npz_and_tfrecord_sources(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((2, 4, 4), np.uint8), y=np.array([0, 1]))
    layout = sources.discover_layout(str(tmp_path / "data.npz"))
    assert (layout.format, layout.input_base, layout.split_patterns) == (
        "npz", str(tmp_path), {"single_split": "data.npz"})
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "part-0.tfrecord.gz").write_bytes(b"")
    layout = sources.discover_layout(str(tmp_path / "records"))
    assert (layout.format, layout.split_patterns) == ("tfrecord", {"single_split": "*"})


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        sources.discover_layout(str(tmp_path / "nowhere"))


def test_class_folders_keep_configured_order_and_flag_the_rest(tmp_path):
    root = write_class_tree(tmp_path / "images", classes=("square", "circle", "horse"))
    (root / "empty").mkdir()
    (root / "README.txt").write_text("notes")
    found = sources.scan_class_folders([str(root)], ["square", "circle"])
    assert found.class_names == ["square", "circle", "empty", "horse"]
    assert found.unknown == ["empty", "horse"]
    assert found.empty == [str(root / "empty")]
    assert found.ignored == [str(root / "README.txt")]
    assert found.skipped == []
    assert sources.scan_class_folders([str(root)], []).class_names == [
        "circle", "empty", "horse", "square"]


def test_entries_beam_would_skip_are_reported(tmp_path):
    root = write_class_tree(tmp_path / "images", per_class=1)
    (root / "circle" / "more").mkdir()
    (root / "circle" / "more" / "x.png").write_bytes(b"")
    os.symlink(root / "gone.png", root / "square" / "dangling.png")
    found = sources.scan_class_folders([str(root)], [])
    assert found.skipped == [
        (str(root / "circle" / "more"), "a folder inside a class folder (nested folders are not read)",
         "ignored"),
        (str(root / "square" / "dangling.png"), "unreadable (broken symbolic link)", "bad")]


def test_no_class_folders_is_an_error(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="no class folders"):
        sources.scan_class_folders([str(tmp_path / "flat")], [])


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_rows_are_read_without_loading_the_whole_array(tmp_path, save):
    x = np.random.default_rng(0).integers(0, 256, (50, 6, 5, 3), dtype=np.uint8)
    y = np.arange(50).reshape(50, 1)
    save(tmp_path / "d.npz", x=x, y=y)
    with sources.NpzReader(str(tmp_path / "d.npz")) as reader:
        np.testing.assert_array_equal(reader.read_rows("x", 10, 17), x[10:17])
        np.testing.assert_array_equal(reader.read_rows("y", 45, 60), y[45:])
    layout = sources.inspect_npz(str(tmp_path / "d.npz"))
    assert (layout.count, layout.image_shape, layout.dtype, layout.has_labels) == (
        50, (6, 5, 3), "uint8", True)


def test_npz_problems_are_named(tmp_path):
    np.savez(tmp_path / "no_x.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(SourceError, match="no array named 'x'"):
        sources.inspect_npz(str(tmp_path / "no_x.npz"))
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((3, 4, 4)), y=np.array([1, 2]))
    with pytest.raises(SourceError, match=r"y has shape \(2,\); expected \(3,\)"):
        sources.inspect_npz(str(tmp_path / "mismatch.npz"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="not a readable .npz"):
        sources.inspect_npz(str(tmp_path / "broken.npz"))


def test_npz_class_names_and_grayscale_shape(tmp_path):
    np.savez(tmp_path / "g.npz", x=np.zeros((4, 28, 28), np.uint8), y=np.array([0, 1, 2, 1]),
             class_names=np.array(["a", "b", "c"]))
    layout = sources.inspect_npz(str(tmp_path / "g.npz"))
    assert layout.image_shape == (28, 28, 1)
    assert layout.class_names == ["a", "b", "c"]


def test_row_ranges_cover_everything_once():
    assert sources.row_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert sources.row_ranges(0, 4) == []


def test_input_fingerprint_counts_broken_links_and_sees_changes(tmp_path):
    from imgpipe.components.image_example_gen.driver import tolerant_fingerprint
    root = write_class_tree(tmp_path / "images", per_class=2)
    pattern = str(root / "*" / "*")
    before = tolerant_fingerprint("single_split", pattern)
    assert "num_files:4" in before and "unstatable:0" in before
    os.symlink(root / "gone.png", root / "circle" / "link.png")
    with_link = tolerant_fingerprint("single_split", pattern)
    assert "num_files:5" in with_link and "unstatable:1" in with_link
    (root / "square" / "001.jpg").write_bytes(b"changed")
    assert tolerant_fingerprint("single_split", pattern) != with_link


def test_reports_name_the_folder_a_run_read_not_the_compiled_one():
    # KFP's data_root parameter moves input_base; the configured source follows it.
    compiled = "/opt/imgpipe/datasets/quickstart"
    assert sources.source_as_read(compiled, compiled, compiled) == compiled
    assert sources.source_as_read(compiled, compiled, "gs://acme/images/2026-12") == \
        "gs://acme/images/2026-12"
    assert sources.source_as_read("gs://acme/drops/span-{SPAN}", "gs://acme/drops",
                                  "gs://acme/other/") == "gs://acme/other/span-{SPAN}"
    assert sources.source_as_read("/data/x.npz", "/data", "/mnt/y") == "/mnt/y/x.npz"
    # Not under the compiled folder (cannot happen from discover_layout): the folder read.
    assert sources.source_as_read("/elsewhere", "/data", "/mnt/y") == "/mnt/y"
    # A pipeline compiled before the key existed reports as before.
    assert sources.source_as_read("/data", "", "/mnt/y") == "/data"


def _example_gen_properties(input_base, pattern):
    from tfx.proto import example_gen_pb2
    from tfx.utils import proto_utils
    config = example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="single_split",
                                                                       pattern=pattern)])
    return {"input_base": str(input_base), "input_config": proto_utils.proto_to_json(config)}


def test_without_a_driver_the_latest_span_is_resolved_and_recorded(tmp_path):
    """What the executor does on open-source Kubeflow, where no driver runs."""
    import json

    from tfx.types import standard_artifacts

    from imgpipe.components.image_example_gen import driver
    for span in (1, 2):
        write_class_tree(tmp_path / f"span-{span}", per_class=2)
    os.symlink(tmp_path / "nowhere.png", tmp_path / "span-2" / "circle" / "gone.png")
    properties, examples = _example_gen_properties(tmp_path, "span-{SPAN}/*/*"), standard_artifacts.Examples()
    assert driver.resolve_without_driver(properties, examples) == (2, None)
    assert json.loads(properties["input_config"])["splits"][0]["pattern"] == "span-2/*/*"
    assert examples.span == 2 and properties["span"] == 2
    fingerprint = properties["input_fingerprint"]
    assert "num_files:5" in fingerprint and "unstatable:1" in fingerprint
    # After TFX's driver (local runs) it changes nothing.
    assert driver.resolve_without_driver(dict(properties), standard_artifacts.Examples()) is None
    with pytest.raises(ValueError, match="Cannot find matching"):
        driver.resolve_without_driver(_example_gen_properties(tmp_path, "drop-{SPAN}/*/*"),
                                      standard_artifacts.Examples())
