"""The Beam transforms of ingestion on real Beam (DirectRunner), without TFX."""
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that
from PIL import Image

from conftest import encode, shape_image, write_class_tree
from imgpipe.components.image_example_gen import ptransforms
from imgpipe.contract import ImageSpec

pytestmark = pytest.mark.e2e  # Beam pipelines: not in `make test-fast`
_COLLECTED = {}


def _collector(key):
    def matcher(actual):
        _COLLECTED[key] = list(actual)
    return matcher


def run_transform(build):
    """Runs `build(pipeline)` -> tagged result; returns {tag: elements}."""
    _COLLECTED.clear()
    options = beam.options.pipeline_options.PipelineOptions(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    with beam.Pipeline(options=options) as pipeline:
        result = build(pipeline)
        for tag in (ptransforms.RECORDS, ptransforms.QUARANTINE, ptransforms.EVENTS):
            assert_that(result[tag], _collector(tag), label=f"Collect{tag}")
    out = dict(_COLLECTED)
    # Records travel in batches and conversions as per-batch counts.
    out[ptransforms.RECORDS] = [r for batch in out[ptransforms.RECORDS] for r in batch]
    out[ptransforms.EVENTS] = sorted(name for counts in out[ptransforms.EVENTS]
                                     for name, n in counts.items() for _ in range(n))
    return out


def settings(root, classes=("circle", "square"), **kwargs):
    return ptransforms.IngestSettings(
        image=ImageSpec(32, 32, 3), class_ids={c: i for i, c in enumerate(classes)},
        input_base=str(root), **kwargs)


def parse(record):
    feature = tf.train.Example.FromString(record).features.feature
    return {k: list(getattr(v, v.WhichOneof("kind")).value) for k, v in feature.items()}


def test_every_bad_input_kind_is_quarantined_with_its_reason(tmp_path):
    root = write_class_tree(tmp_path / "images", per_class=4)
    good = encode(shape_image("circle", seed=7), "JPEG")
    (root / "circle" / "zero.jpg").write_bytes(b"")
    (root / "circle" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 200] = os.urandom(200)
    (root / "circle" / "garbled.jpg").write_bytes(bytes(corrupt))
    (root / "circle" / "text.png").write_text("I am not a PNG")
    (root / "square" / "bomb.png").write_bytes(encode(Image.new("1", (9000, 9000)), "PNG"))
    (root / "square" / "notes.txt").write_text("not an image")
    (root / "square" / ".DS_Store").write_bytes(b"\0")

    out = run_transform(lambda p: p | ptransforms.ImageFilesToRecords(
        os.path.join(str(root), "*/*"), settings(root)))

    reasons = {os.path.basename(row["path"]): (row["kind"], row["reason"])
               for row in out[ptransforms.QUARANTINE]}
    assert reasons["zero.jpg"] == ("bad", "empty file (0 bytes)")
    assert reasons["truncated.jpg"][0] == "bad"
    assert "corrupt or truncated JPEG" in reasons["truncated.jpg"][1] or \
        "not a readable" in reasons["truncated.jpg"][1]
    assert reasons["text.png"][1].startswith("not a readable JPEG or PNG image")
    assert "possible decompression bomb" in reasons["bomb.png"][1]
    assert reasons["notes.txt"][0] == "ignored"
    assert reasons[".DS_Store"][0] == "ignored"
    # The garbled JPEG either decodes (JPEG tolerates some damage) or is listed:
    # it never vanishes.
    ids = {parse(r[2])["source_id"][0].decode() for r in out[ptransforms.RECORDS]}
    assert ("garbled.jpg" in reasons) != ("circle/garbled.jpg" in ids)
    assert {f"circle/00{i}.{'png' if i % 2 == 0 else 'jpg'}" for i in range(4)} <= ids
    assert len(out[ptransforms.RECORDS]) in (8, 9)


def test_good_images_are_kept_encoded_with_labels_properties_and_conversions(tmp_path):
    root = write_class_tree(tmp_path / "images", per_class=2)
    shape_image("square", seed=3).convert("L").save(root / "square" / "grey.png")
    shape_image("circle", seed=4, size=48).save(root / "circle" / "big.png")
    out = run_transform(lambda p: p | ptransforms.ImageFilesToRecords(
        os.path.join(str(root), "*/*"), settings(root)))
    assert out[ptransforms.QUARANTINE] == []
    assert sorted(out[ptransforms.EVENTS]) == ["grayscale -> RGB", "resized from 48x48"]
    by_id = {source_id: (label, parse(record)) for source_id, label, record in out[ptransforms.RECORDS]}
    label, grey = by_id["square/grey.png"]
    assert label == 1 and grey["label"] == [1]
    # The file as it arrived, and what it is: a 1-channel PNG, grey R = G = B.
    assert grey["image_encoded"] == [(root / "square" / "grey.png").read_bytes()]
    assert grey["image_format"] == [b"PNG"] and grey["channels"] == [1]
    assert grey["mean_red"] == grey["mean_green"] == grey["mean_blue"]
    assert "image" not in grey and "pixel_dtype" not in grey
    big = by_id["circle/big.png"][1]
    assert (big["height"], big["width"], big["aspect_ratio"]) == ([48], [48], [1.0])
    circle = by_id["circle/000.png"][1]
    pixels = np.asarray(Image.open(root / "circle" / "000.png").convert("RGB"), np.float64)
    assert circle["brightness"][0] == pytest.approx((pixels @ [0.299, 0.587, 0.114]).mean(), abs=0.5)
    assert circle["mean_red"][0] == pytest.approx(pixels[..., 0].mean(), abs=0.01)


def test_npz_keeps_dtype_scale_and_shape(tmp_path):
    x = np.stack([np.asarray(shape_image("circle", seed=i)) for i in range(5)]) / 255.0
    x = x.astype(np.float32)
    np.savez_compressed(tmp_path / "scaled.npz", x=x, y=np.array([[0], [1], [0], [1], [1]]))
    out = run_transform(lambda p: p | ptransforms.NpzToRecords(
        str(tmp_path / "scaled.npz"), "scaled.npz", 5, True, rows_per_read=2))
    records = sorted(out[ptransforms.RECORDS])
    assert [r[0] for r in records] == [f"scaled.npz[{i}]" for i in range(5)]
    first = parse(records[0][2])
    assert first["pixel_dtype"] == [b"float32"]
    np.testing.assert_allclose(first["image"], x[0].reshape(-1))
    assert [r[1] for r in records] == [0, 1, 0, 1, 1]


def test_npz_grayscale_without_labels(tmp_path):
    x = np.stack([np.asarray(shape_image(seed=i).convert("L")) for i in range(3)])
    np.savez(tmp_path / "grey.npz", x=x)
    out = run_transform(lambda p: p | ptransforms.NpzToRecords(
        str(tmp_path / "grey.npz"), "grey.npz", 3, False))
    parsed = parse(sorted(out[ptransforms.RECORDS])[0][2])
    assert parsed["channels"] == [1] and "label" not in parsed
    assert parsed["image"] == x[0].reshape(-1).tolist()


def test_tfrecords_pass_through_or_decode_image_bytes(tmp_path):
    path = str(tmp_path / "part.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        kept = tf.train.Example()
        kept.features.feature["image"].float_list.value.extend([0.5] * 12)
        kept.features.feature["label"].int64_list.value.append(3)
        writer.write(kept.SerializeToString())
        encoded = tf.train.Example()
        encoded.features.feature["image"].bytes_list.value.append(
            encode(shape_image("cross", seed=1, size=40), "JPEG"))
        writer.write(encoded.SerializeToString())
        writer.write(b"\x08\x96\x01garbage")
    out = run_transform(lambda p: p | ptransforms.TFRecordsToRecords(
        path, settings(tmp_path, classes=())))
    assert len(out[ptransforms.RECORDS]) == 2
    by_kind = {len(parse(r[2])["image"]): (r[1], parse(r[2])) for r in out[ptransforms.RECORDS]}
    label, passthrough = by_kind[12]
    assert label == 3 and passthrough["image"] == [0.5] * 12
    assert passthrough["source_id"][0].startswith(b"part.tfrecord#")
    label, decoded = by_kind[32 * 32 * 3]
    assert label == ptransforms.NO_LABEL and "label" not in decoded
    assert out[ptransforms.EVENTS] == ["resized from 40x40"]
    assert [row["reason"] for row in out[ptransforms.QUARANTINE]] == [
        "record is not a serialized tf.Example"]


def test_splits_are_assigned_per_record_and_counted():
    batch = [(f"c/{i}.png", i % 3, f"record{i}".encode()) for i in range(300)]
    fn = ptransforms.AssignSplits(["train", "eval"], [800, 1000])
    outputs = list(fn.process(batch))
    records = [o for o in outputs if o.tag != ptransforms.COUNTS]
    [counts] = [o.value for o in outputs if o.tag == ptransforms.COUNTS]
    assert len(records) == 300 and sum(counts.values()) == 300
    assert {o.tag for o in records} == {"train", "eval"}
    assert counts[("train", 0)] == sum(1 for o, (sid, label, _) in zip(records, batch)
                                       if o.tag == "train" and label == 0)
    assert ptransforms.merge_counts([{("a", 1): 2}, {("a", 1): 3, ("b", 0): 1}]) == {
        ("a", 1): 5, ("b", 0): 1}


def test_hash_split_is_deterministic_and_follows_the_ratios():
    bounds = [800, 1000]
    ids = [f"class/{i:05d}.jpg" for i in range(5000)]
    first = [ptransforms.split_index(i, bounds) for i in ids]
    assert first == [ptransforms.split_index(i, bounds) for i in ids]
    assert 0.77 < first.count(0) / len(ids) < 0.83


@pytest.mark.parametrize("level", [ptransforms.PIXELS_LEVEL, ptransforms.ENCODED_LEVEL])
def test_written_examples_are_standard_gzip_tfrecords(tmp_path, level):
    records = [f"record-{i}".encode() * (i + 1) for i in range(2000)]
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create(records)
             | ptransforms.WriteExamples(str(tmp_path / "Split-train"), str(tmp_path / "tmp"),
                                         level=level))
    files = sorted((tmp_path / "Split-train").glob("data_tfrecord-*.gz"))
    assert files and sorted((tmp_path / "Split-train").iterdir()) == files
    read = list(tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP")
                .as_numpy_iterator())
    assert sorted(read) == sorted(records)
    # The sink may end a gzip member and start another; readers must accept it.
    sink = ptransforms.GzipTFRecordSink(level)
    with open(tmp_path / "two_members.gz", "wb") as handle:
        sink.open(handle)
        sink.write(b"first")
        sink.flush()
        sink.write(b"second")
        sink.flush()
    read = list(tf.data.TFRecordDataset(str(tmp_path / "two_members.gz"),
                                         compression_type="GZIP").as_numpy_iterator())
    assert read == [b"first", b"second"]
