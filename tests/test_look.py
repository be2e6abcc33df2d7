"""The look at the data from examples and TFDV statistics, without a pipeline."""
import gzip

import numpy as np
import tensorflow as tf
from PIL import Image

from conftest import encode
from imgpipe.components.image_example_gen import encoding
from imgpipe.components.validation_gate import inprocess, look, schema_curation
from imgpipe.contract import ImageSpec, image_files, image_ops

SPEC = ImageSpec(16, 24, 3, aspect="crop", exif_orientation="apply")
CLASSES = ["dark", "light"]


def _decoded(count: int):
    """Encoded files of two classes: dark ones 60x30, light ones 30x30."""
    items, labels = [], []
    for i in range(count):
        label = i % 2
        size = (30, 30) if label else (60, 30)
        data = encode(Image.new("RGB", size, (200, 180, 160) if label else (30, 40, 50)), "PNG")
        items.append((f"{CLASSES[label]}/{i}.png", data, image_files.probe_image(data)))
        labels.append(label)
    decoded, failures, _ = image_ops.decode_items(image_ops.make_batch_decoder(SPEC), items, SPEC)
    assert not failures
    return decoded, labels


def test_the_look_reads_examples_as_the_model_sees_them_and_statistics_for_the_rest(tmp_path):
    decoded, labels = _decoded(30)
    batch = encoding.encoded_record_batch(decoded, labels, [d.key for d in decoded], SPEC)
    split = tmp_path / "Split-train"
    split.mkdir()
    with gzip.open(split / "data_tfrecord-00000-of-00001.gz", "wb") as handle:
        writer_path = tmp_path / "plain.tfrecord"
        with tf.io.TFRecordWriter(str(writer_path)) as writer:
            for record in encoding.serialize(batch):
                writer.write(record)
        handle.write(writer_path.read_bytes())
    schema = schema_curation.curate(None, height=16, width=24, channels=3, class_names=CLASSES,
                                    thresholds=schema_curation.DriftThresholds(), encoded=True)
    stats = inprocess.statistics(batch, schema)

    counts = look.label_counts({"train": stats}, CLASSES)
    assert counts == {"train": {"dark": 15, "light": 15}}
    brightness = look.property_histogram(stats, "brightness")
    assert brightness.total == 30 and brightness.edges[0] < 45 and brightness.edges[-1] > 180
    samples = look.collect_samples(str(split), SPEC, CLASSES, encoded=True)
    assert [len(samples[c]) for c in CLASSES] == [9, 9]
    expected = image_ops.decode_and_prepare(tf.constant(decoded[0].data), SPEC).numpy()
    np.testing.assert_array_equal(samples["dark"][0], expected)
    assert samples["dark"][0].shape == (16, 24, 3)

    found = look.write_look(str(tmp_path), {"train": str(split)}, {"train": stats}, SPEC, CLASSES,
                            encoded=True)
    assert set(found["pictures"]) == {"label distribution", "samples", "brightness", "aspect_ratio"}
    assert found["warnings"] and "fewer than 50" in found["warnings"][0]
