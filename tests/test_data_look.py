"""A look at the data: collectors, charts, warnings and the index page (pure, fast)."""
import numpy as np
import pytest
from PIL import Image

from imgpipe.components.validation_gate import data_look


def _image(value, channels=3, size=8):
    return np.full((size, size, channels), value, dtype=np.uint8)


def _png(path):
    """The written file's size; fails unless it is a real, non-trivial PNG."""
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert image.width >= 200 and image.height >= 150
        return image.size


def test_collector_keeps_the_first_nine_per_class_in_arrival_order():
    collector = data_look.SampleCollector(["ants", "bees"])
    for value in range(12):
        collector.add(0, _image(value))
    for label in (-1, 2, 7):
        collector.add(label, _image(200))
    samples = collector.samples()
    assert [int(s[0, 0, 0]) for s in samples["ants"]] == list(range(9))
    assert samples["bees"] == []
    assert not collector.full()
    for value in range(9):
        collector.add(1, _image(value))
    assert collector.full()


def test_collector_keeps_a_copy_of_a_reused_buffer():
    collector = data_look.SampleCollector(["ants"], per_class=2)
    buffer = _image(1)
    collector.add(0, buffer)
    buffer[:] = 99
    assert int(collector.samples()["ants"][0][0, 0, 0]) == 1


def test_samples_grid_with_an_empty_class_and_grey_images(tmp_path):
    samples = {"ants": [_image(v) for v in (0, 120, 255)], "bees": [],
               "grey": [_image(v, channels=1) for v in range(0, 250, 25)]}
    path = str(tmp_path / data_look.SAMPLES_PNG)
    assert data_look.write_samples_grid(samples, path) == path
    _png(path)


def test_samples_grid_for_one_class_shows_grey_as_grey_and_at_most_nine(tmp_path):
    gradient = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))[..., None]
    nine, twelve = str(tmp_path / "nine.png"), str(tmp_path / "twelve.png")
    data_look.write_samples_grid({"grey": [gradient] * 9}, nine)
    data_look.write_samples_grid({"grey": [gradient] * 12}, twelve)
    assert _png(nine) == _png(twelve)
    pixels = np.asarray(Image.open(nine).convert("RGB")).astype(int)
    # A colour map (matplotlib's default) would colour the gradient; grey keeps R == G == B.
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.array_equal(pixels[..., 1], pixels[..., 2])
    assert pixels.min() < 30  # the dark end of the gradient is drawn, not stretched away


def test_label_distribution_for_several_splits_and_for_one(tmp_path):
    counts = {"train": {"ants": 80, "bees": 70}, "eval": {"ants": 20, "wasps": 5}}
    path = str(tmp_path / data_look.LABELS_PNG)
    assert data_look.write_label_distribution(counts, path) == path
    _png(path)
    one = str(tmp_path / "one.png")
    data_look.write_label_distribution({"train": {"ants": 3}}, one)
    _png(one)


@pytest.mark.parametrize("log_x", [False, True])
def test_histogram_chart(tmp_path, log_x):
    edges = np.geomspace(0.25, 4.0, 31) if log_x else np.linspace(0, 255, 33)
    counts = np.histogram([0.5, 1.0, 1.0, 1.5, 3.0], bins=edges)[0]
    histogram = data_look.Histogram(edges, counts)
    assert histogram.total == 5
    path = str(tmp_path / "chart.png")
    assert data_look.write_histogram(histogram, path, "Title", "x", log_x=log_x) == path
    _png(path)


def test_no_warnings_for_balanced_classes_of_fifty():
    assert data_look.data_warnings({"ants": 50, "bees": 400}) == []


def test_small_classes_are_named_in_one_warning():
    warnings = data_look.data_warnings({"ants": 60, "wasps": 49, "bees": 12})
    assert len(warnings) == 1
    assert warnings[0].startswith("class 'bees' has 12 training images, "
                                  "class 'wasps' has 49 training images")  # smallest first
    assert "ants" not in warnings[0] and "fewer than 50" in warnings[0]


def test_imbalance_names_both_classes_and_the_ratio():
    warnings = data_look.data_warnings({"ants": 600, "bees": 55, "wasps": 300})
    assert len(warnings) == 1
    assert "'ants' has 600" in warnings[0] and "'bees' has 55" in warnings[0]
    assert "10.9x" in warnings[0]
    assert data_look.data_warnings({"ants": 500, "bees": 50}) == []  # exactly 10x is allowed


def test_an_empty_class_is_small_and_said_to_be_empty():
    counts = {"ants": 100, "bees": 0}
    warnings = data_look.data_warnings(counts)
    assert len(warnings) == 2
    assert "class 'bees' has 0 training images" in warnings[0]
    assert "'bees' is empty" in warnings[1] and "'ants' has 100" in warnings[1]
    assert data_look.data_warnings(dict(reversed(list(counts.items())))) == warnings


def test_index_page_links_relatively_escapes_and_embeds_pngs(tmp_path):
    page = tmp_path / "look" / data_look.INDEX_HTML
    page.parent.mkdir()
    sections = [("Charts", [("a <b> & c", str(page.parent / data_look.SAMPLES_PNG))]),
                ("Reports", [("report", str(tmp_path / "reports" / "ingestion report.json"))]),
                ("Quarantine", [])]
    assert data_look.write_index_html(str(page), "Look <here>", sections) == str(page)
    text = page.read_text(encoding="utf-8")
    assert "<h1>Look &lt;here&gt;</h1>" in text
    assert '<img src="samples.png" alt="a &lt;b&gt; &amp; c">' in text
    assert "<figcaption>a &lt;b&gt; &amp; c</figcaption>" in text
    assert '<a href="../reports/ingestion report.json">report</a>' in text
    assert "<b>" not in text and str(tmp_path) not in text
    assert "(nothing recorded)" in text
