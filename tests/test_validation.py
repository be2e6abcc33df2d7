"""The validation gate's logic in process: each trap from real encoded images."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import encode
from imgpipe import quickstart_data
from imgpipe.components.image_example_gen import encoding
from imgpipe.components.validation_gate import checks, inprocess, schema_curation
from imgpipe.contract import ImageSpec, image_ops

CLASSES = list(quickstart_data.CLASSES)
THRESHOLDS = schema_curation.DriftThresholds(pixel_js_divergence=0.1, label_linf=0.1)


def decoded_images(per_class: int, seed: int):
    """JPEG/PNG files drawn by the quickstart generator, decoded by ingestion's ops."""
    rng = np.random.default_rng(seed)
    pixels, labels = [], []
    for label, shape in enumerate(CLASSES):
        for i in range(per_class):
            data = encode(quickstart_data.draw_shape(shape, rng), "JPEG" if i % 2 else "PNG")
            pixels.append(image_ops.decode_and_prepare(tf.constant(data), ImageSpec(32, 32, 3)).numpy())
            labels.append(label)
    return np.stack(pixels), np.array(labels)


@pytest.fixture(scope="module")
def clean():
    return decoded_images(40, seed=1)


@pytest.fixture(scope="module")
def schema():
    return schema_curation.curate(None, height=32, width=32, channels=3, class_names=CLASSES,
                                  thresholds=THRESHOLDS)


def stats_of(schema, x, y, dtype=None):
    batch = encoding.examples_record_batch(x, y, [str(i) for i in range(len(x))],
                                           dtype or str(x.dtype))
    return inprocess.statistics(batch, schema)


def verdict(schema, x, y, dtype=None, environment="TRAINING", baseline=None):
    return inprocess.validate(stats_of(schema, x, y, dtype), schema, environment, baseline)


def errors(result):
    return [f.message for f in result.findings if f.severity == checks.ERROR]


def test_clean_uint8_images_pass(schema, clean):
    result = verdict(schema, *clean)
    assert result.passed, errors(result)
    assert result.examples == len(clean[0])


def test_float32_already_scaled_to_unit_range(schema, clean):
    x, y = clean
    result = verdict(schema, x.astype(np.float32) / 255.0, y)
    assert not result.passed
    assert ("image: expected INT pixels in [0, 255] (uint8); got FLOAT in [0, 1] (source dtype "
            "float32) — the data looks already scaled to [0,1]; feeding it would scale twice."
            ) in errors(result)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_pixels_in_uint8_range(schema, clean, dtype):
    x, y = clean
    result = verdict(schema, x.astype(dtype), y)
    [message] = [m for m in errors(result) if m.startswith("image:")]
    assert f"got FLOAT in [0, 255] (source dtype {np.dtype(dtype).name})" in message
    assert "float pixels in the uint8 range" in message


def test_integer_pixels_scaled_to_zero_and_one(schema, clean):
    x, y = clean
    result = verdict(schema, np.round(x / 255.0).astype(np.uint8), y)
    assert any("look scaled to [0,1] and then cast to integers" in m for m in errors(result))


def test_grayscale_where_rgb_is_expected(schema, clean):
    x, y = clean
    grey = tf.image.rgb_to_grayscale(x).numpy()
    messages = errors(verdict(schema, grey, y))
    assert "channels: expected 3; got 1 — grayscale images where RGB is expected." in messages
    assert any(m.startswith("image: expected 32x32x3 = 3072 values per example; got 1024 — "
                            "grayscale") for m in messages)


def test_wrong_image_size(schema, clean):
    x, y = clean
    small = tf.image.resize(x, [28, 28]).numpy().round().astype(np.uint8)
    messages = errors(verdict(schema, small, y))
    assert any(m.startswith("height: expected 32; got 28 — images of the wrong size") for m in messages)
    assert any(m.startswith("width: expected 32; got 28") for m in messages)


def test_values_above_255(schema, clean):
    x, y = clean
    deep = x.astype(np.uint16) * 257  # 16-bit pixels
    messages = errors(verdict(schema, deep, y))
    assert any("got INT up to 65535 (source dtype uint16) — not 8-bit pixels" in m for m in messages)


def test_label_outside_the_domain_is_a_new_class(schema, clean):
    x, y = clean
    messages = errors(verdict(schema, x, np.where(y == 3, 4, y)))
    assert any(m.startswith("label: expected class ids 0..3 (circle, cross, square, triangle); got 4")
               for m in messages)


def test_training_example_without_a_label(schema, clean):
    import pyarrow as pa
    x, y = clean
    batch = encoding.examples_record_batch(x, y, [str(i) for i in range(len(x))], "uint8")
    labels = batch.column(batch.schema.get_field_index("label")).to_pylist()
    labels[5] = None
    columns = [pa.array(labels, pa.list_(pa.int64())) if name == "label" else batch.column(i)
               for i, name in enumerate(batch.schema.names)]
    stats = inprocess.statistics(pa.RecordBatch.from_arrays(columns, batch.schema.names), schema)
    result = inprocess.validate(stats, schema, "TRAINING")
    assert f"label: 1 of {len(x)} training examples have no label — every training example needs one." \
        in errors(result)


def test_serving_samples_need_no_label(schema, clean):
    x, _ = clean
    assert verdict(schema, x, None, environment="SERVING").passed
    assert not verdict(schema, x, None, environment="TRAINING").passed


def test_pixel_drift_between_spans(schema, clean):
    x, y = clean
    baseline = stats_of(schema, x, y)
    brighter = np.clip(x.astype(int) + 60, 0, 255).astype(np.uint8)
    result = verdict(schema, brighter, y, baseline=baseline)
    [message] = [m for m in errors(result) if m.startswith("image: ")]
    assert message.startswith("image: pixel distribution drifted from the baseline: "
                              "Jensen-Shannon divergence")
    assert any(m.startswith("brightness: per-image distribution drifted") for m in errors(result))
    assert result.drift["image"]["value"] > 0.1


def test_label_drift_between_spans(schema, clean):
    x, y = clean
    baseline = stats_of(schema, x, y)
    keep = y < 2
    result = verdict(schema, x[keep], y[keep], baseline=baseline)
    assert any(m.startswith("label: label distribution drifted from the baseline: L-infinity "
                            "distance 0.250") for m in errors(result))


def test_a_clean_new_span_is_no_false_alarm(schema, clean):
    baseline = stats_of(schema, *clean)
    new_span = decoded_images(40, seed=2)
    result = verdict(schema, *new_span, baseline=baseline)
    assert result.passed, errors(result)
    assert result.drift["image"]["value"] < 0.1 and result.drift["label"]["value"] < 0.1


def test_curation_fixes_what_tfdv_infers(clean):
    import tensorflow_data_validation as tfdv
    x, y = clean
    keep = y < 2  # labels only 0/1: TFDV's inference turns them into a boolean
    draft = tfdv.infer_schema(inprocess.statistics(encoding.examples_record_batch(
        x[keep], y[keep], [str(i) for i in range(int(keep.sum()))], "uint8")))
    label = next(f for f in draft.feature if f.name == "label")
    assert label.HasField("bool_domain") or not label.HasField("int_domain")
    curated = schema_curation.curate(draft, height=32, width=32, channels=3,
                                     class_names=["circle", "cross"], thresholds=THRESHOLDS)
    features = {f.name: f for f in curated.feature}
    assert features["label"].WhichOneof("domain_info") == "int_domain"
    assert (features["label"].int_domain.min, features["label"].int_domain.max) == (0, 1)
    assert features["label"].int_domain.is_categorical
    assert list(features["label"].not_in_environment) == ["SERVING"]
    assert (features["image"].int_domain.min, features["image"].int_domain.max) == (0, 255)
    assert [d.size for d in features["image"].shape.dim] == [32, 32, 3]
    assert features["image"].drift_comparator.jensen_shannon_divergence.threshold == 0.1
    assert features["label"].drift_comparator.infinity_norm.threshold == 0.1
    assert list(curated.default_environment) == ["TRAINING", "SERVING"]


def test_schema_mismatches_with_the_config(schema):
    assert schema_curation.mismatches(schema, height=32, width=32, channels=3,
                                      class_names=CLASSES) == []
    problems = schema_curation.mismatches(schema, height=64, width=32, channels=1,
                                          class_names=["a", "b"])
    assert "image.height is 64 but the schema expects 32" in problems
    assert "image.channels is 1 but the schema expects 3" in problems
    assert "data.classes has 2 classes but the schema's label domain has 4" in problems
    text = schema_curation.describe(schema)
    assert "image            INT     shape [32, 32, 3]  in [0, 255]" in text
    assert "not in SERVING" in text


def test_checked_in_schemas_are_curated():
    import tensorflow_data_validation as tfdv

    from conftest import REPO
    for name, classes in (("quickstart", CLASSES), ("cifar10", None)):
        schema = tfdv.load_schema_text(str(REPO / "schemas" / f"{name}.pbtxt"))
        found = schema_curation.expectations(schema)
        # Both presets read class folders of image files: the encoded layout,
        # whose schema leaves the model's image size to the config.
        assert found.encoded and (found.height, found.width, found.channels) == (None, None, None)
        assert found.class_names == classes if classes else found.class_names[0] == "airplane"
        curated = schema_curation.curate(schema, height=32, width=32, channels=3,
                                         class_names=found.class_names, thresholds=THRESHOLDS)
        assert curated == schema, f"{name}.pbtxt is not what curation makes of it"
        assert schema_curation.mismatches(schema, height=224, width=224, channels=3,
                                          class_names=found.class_names) == []


def test_class_names_must_be_in_the_schema_order():
    assert checks.class_names_mismatch(CLASSES, CLASSES) is None
    assert checks.class_names_mismatch([], CLASSES) is None  # arrays without names
    finding = checks.class_names_mismatch(["cross", "circle", "square", "triangle"], CLASSES)
    assert finding.severity == checks.ERROR
    assert "label ids would mean other classes" in finding.message
    # A new class after the known ones is the label domain's business, not this check's.
    assert checks.class_names_mismatch(CLASSES + ["hexagon"], CLASSES) is None


def test_in_process_reads_decode_with_the_configured_image_policies(tmp_path):
    """validate, schema infer and to-npz decode as ingestion does, policies included."""
    import io

    from PIL import Image

    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:10, :20] = 250                                      # a bright top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6                                            # to be turned 90 degrees clockwise
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "turned.jpg").write_bytes(buffer.getvalue())
    folder = inprocess.list_folder_images(str(tmp_path))
    for policy in ("apply", "ignore"):
        spec = ImageSpec(16, 16, 3, aspect="crop", exif_orientation=policy)
        [(batch, labels, ids)] = list(folder.decoded_batches(spec, 10_000_000))
        expected = image_ops.decode_and_prepare(tf.constant(buffer.getvalue()), spec).numpy()
        np.testing.assert_array_equal(batch[0].pixels, expected)
        assert batch[0].data == buffer.getvalue()   # kept as it arrived
    assert folder.conversions["EXIF orientation 6 applied"] == 2
    assert folder.conversions["EXIF orientation 6 ignored"] == 2


def _photo_span(root, seed: int, per_class: int = 75, edit=None):
    """Class folders of warm-toned JPEG photos (R above B, as daylight photos
    are), optionally edited (channels swapped, darkened) before encoding."""
    from PIL import Image

    from conftest import PHOTO_SIZES, photo
    for c_index, name in enumerate(("ants", "bees")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.asarray(photo(seed + 1000 * c_index + i, PHOTO_SIZES[i % 5],
                                      tint=(1.0, 0.85, 0.6)))
            if edit is not None:
                pixels = edit(pixels)
            (root / name / f"{i:04d}.jpg").write_bytes(encode(Image.fromarray(pixels), "JPEG"))
    return str(root)


def _property_stats(source, schema):
    loaded = inprocess.load_source(source, height=48, width=48, channels=3,
                                   policies=ImageSpec(48, 48, 3, exif_orientation="apply"))
    [stats] = inprocess.statistics_of(loaded.batches, schema)
    return stats


def test_property_drift_flags_a_channel_swap_and_a_darker_span_not_a_clean_one(tmp_path):
    """Image files are the encoded layout: drift is judged on the per-image
    properties, which see what a pixel histogram over all channels blurs."""
    schema = schema_curation.curate(None, height=48, width=48, channels=3,
                                    class_names=["ants", "bees"], thresholds=THRESHOLDS,
                                    encoded=True)
    baseline = _property_stats(_photo_span(tmp_path / "base", seed=0), schema)
    spans = {"clean": None, "swapped": lambda p: p[..., ::-1],
             "darker": lambda p: (p.astype(np.float32) * 0.7).astype(np.uint8)}
    flagged = {}
    for name, edit in spans.items():
        source = _photo_span(tmp_path / name, seed=50_000, edit=edit)
        result = inprocess.validate(_property_stats(source, schema), schema, "TRAINING",
                                    baseline=baseline)
        flagged[name] = sorted(f.feature for f in result.findings if f.kind == "DRIFT")
        assert set(result.drift) >= {"brightness", "mean_red", "mean_blue", "aspect_ratio"}
    assert flagged["clean"] == []
    assert {"mean_red", "mean_blue"} <= set(flagged["swapped"])
    assert "brightness" in flagged["darker"]
    message = next(f.message for f in inprocess.validate(
        _property_stats(str(tmp_path / "swapped"), schema), schema, "TRAINING",
        baseline=baseline).findings if f.feature == "mean_blue")
    assert message.startswith("mean_blue: per-image distribution drifted from the baseline: "
                              "Jensen-Shannon divergence") and "R and B exchanged" in message
