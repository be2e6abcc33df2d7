"""The ingestion report and its verdict (pure)."""
import json

from imgpipe.components.image_example_gen import report


def _report(counts, quarantine=(), conversions=None, max_bad=0.01, classes=("cat", "dog"),
            unknown=()):
    return report.build_report(
        source="/data", source_format="folders", span=0, image_shape=[32, 32, 3],
        class_names=list(classes), unknown_classes=list(unknown),
        split_label_counts=counts, quarantine=list(quarantine),
        conversions=conversions or {}, max_bad_fraction=max_bad)


def _bad(n):
    return [{"path": f"/data/cat/{i}.jpg", "reason": "empty file (0 bytes)", "kind": "bad"}
            for i in range(n)]


def test_clean_source_is_ok_with_counts_per_split_and_class():
    result = _report({"train": {0: 80, 1: 78}, "eval": {0: 20, 1: 22}},
                     conversions={"grayscale -> RGB": 3, "resized from 48x48": 5})
    assert result["status"] == "ok" and result["examples"] == 200
    assert result["splits"]["train"]["per_class"] == {"cat": 80, "dog": 78}
    text = report.format_report(result)
    assert "grayscale -> RGB" in text and "resized" in text and "48x48 x5" in text


def test_bad_fraction_at_the_limit_passes_and_above_fails():
    assert _report({"train": {0: 50, 1: 49}}, _bad(1))["status"] == "ok"  # 1/100
    failed = _report({"train": {0: 50, 1: 48}}, _bad(2))                    # 2/100
    assert failed["status"] == "failed"
    assert "2 of 100 inputs (2.00%) could not be read" in failed["errors"][0]


def test_ignored_files_do_not_count_as_bad():
    ignored = [{"path": "/data/cat/notes.txt", "reason": "not an image file", "kind": "ignored"}] * 5
    result = _report({"train": {0: 10, 1: 10}}, ignored)
    assert result["status"] == "ok" and result["ignored"] == 5 and result["bad"] == 0


def test_empty_source_and_single_class_are_errors():
    assert "the source is empty" in _report({"train": {}})["errors"][0]
    assert "produced no examples (3 inputs" in _report({"train": {}}, _bad(3))["errors"][0]
    single = _report({"train": {0: 10}, "eval": {0: 3}})
    assert single["errors"] == ["all examples have one class (cat); a classifier needs at least two"]


def test_unknown_classes_and_missing_labels_are_warned_about():
    result = _report({"train": {0: 5, 1: 5, 2: 4, -1: 2}}, unknown=["horse"],
                     classes=("cat", "dog", "horse"))
    assert any("horse" in w and "outside the configured label domain" in w for w in result["warnings"])
    assert any("2 examples carry no label" in w for w in result["warnings"])


def test_report_files_are_written(tmp_path):
    result = _report({"train": {0: 50, 1: 48}}, _bad(2))
    paths = report.write_report(result, str(tmp_path))
    assert json.loads((tmp_path / report.REPORT_JSON).read_text())["bad"] == 2
    assert (tmp_path / report.QUARANTINE_CSV).read_text().splitlines()[1] == \
        "bad,/data/cat/0.jpg,empty file (0 bytes)"
    assert "ERROR" in (tmp_path / report.REPORT_TEXT).read_text()
    assert report.read_report(str(tmp_path))["status"] == "failed"
    assert set(paths) == {"json", "text", "quarantine"}


def test_hundreds_of_source_sizes_are_summarised_in_one_short_line():
    conversions = {f"resized from {h}x{w}": 1 for h in range(100, 300, 10) for w in (400, 500)}
    conversions.update({"resized from 375x500": 84, "resized from 500x375": 19,
                        "grayscale -> RGB": 3})
    line = report.describe_source_sizes(conversions)
    assert line == ("source sizes resized: 42 sizes, 375-500 wide, 100-500 high; most common "
                    "375x500 x84, 500x375 x19, 100x400 x1")
    assert report.describe_source_sizes({"resized from 48x48": 40}) == \
        "source sizes resized: 48x48 x40"
    assert report.describe_source_sizes({"grayscale -> RGB": 3}) == ""
    assert report.summarize_conversions(conversions) == {"resized": 143, "grayscale -> RGB": 3}
