"""Probing files, naming conversions and building tf.Examples (no Beam)."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import encode, shape_image
from imgpipe.components.image_example_gen import encoding
from imgpipe.contract import ImageSpec, image_files
from imgpipe.contract.image_files import BadInput


def test_probe_reads_format_mode_and_size():
    info = image_files.probe_image(encode(shape_image(size=48), "PNG"))
    assert (info.format, info.mode, info.width, info.height, info.bit_depth) == ("PNG", "RGB", 48, 48, 8)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"this is a text file named like a picture", "not a readable JPEG or PNG"),
])
def test_probe_rejects_non_images(data, reason):
    with pytest.raises(BadInput, match=reason):
        image_files.probe_image(data)


def test_probe_rejects_formats_other_than_jpeg_and_png():
    with pytest.raises(BadInput, match="format GIF is not supported"):
        image_files.probe_image(encode(shape_image(), "GIF"))


def test_probe_rejects_decompression_bombs_from_the_header():
    # 1-bit 9000x9000 compresses to a few KB but would decode to 81M pixels.
    bomb = encode(Image.new("1", (9000, 9000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(BadInput, match="above the limit of 50,000,000"):
        image_files.probe_image(bomb)


def test_probe_reports_sixteen_bit_png():
    data = encode(Image.fromarray(np.full((8, 8), 4000, np.uint16)), "PNG")
    assert image_files.probe_image(data).bit_depth == 16


def test_conversions_are_named():
    rgba = image_files.ImageInfo("PNG", "RGBA", 48, 40, 8)
    assert image_files.conversions_for(rgba, (40, 48, 4), ImageSpec(32, 32, 3)) == [
        image_files.ALPHA_DROPPED, "resized from 40x48"]
    grey = image_files.ImageInfo("JPEG", "L", 32, 32, 8)
    assert image_files.conversions_for(grey, (32, 32, 1), ImageSpec(32, 32, 3)) == [image_files.GREY_TO_RGB]
    palette = image_files.ImageInfo("PNG", "P", 32, 32, 8)
    assert image_files.conversions_for(palette, (32, 32, 3), ImageSpec(32, 32, 3)) == [
        image_files.PALETTE_EXPANDED]
    cmyk = image_files.ImageInfo("JPEG", "CMYK", 32, 32, 8)
    assert image_files.conversions_for(cmyk, (32, 32, 3), ImageSpec(32, 32, 1)) == [
        image_files.CMYK_TO_RGB, image_files.RGB_TO_GREY]
    deep = image_files.ImageInfo("PNG", "I;16", 32, 32, 16)
    assert image_files.conversions_for(deep, (32, 32, 1), ImageSpec(32, 32, 1)) == [image_files.SIXTEEN_BIT]
    plain = image_files.ImageInfo("PNG", "RGB", 32, 32, 8)
    assert image_files.conversions_for(plain, (32, 32, 3), ImageSpec(32, 32, 3)) == []


def _parse(record: bytes) -> dict:
    feature = tf.train.Example.FromString(record).features.feature
    out = {}
    for key, value in feature.items():
        kind = value.WhichOneof("kind")
        out[key] = (kind, list(getattr(value, kind).value))
    return out


def test_uint8_pixels_become_an_int64_feature_unchanged():
    pixels = np.asarray(shape_image("cross", seed=3))[np.newaxis]
    [record] = encoding.encode_examples(pixels, [2], ["cross/1.png"], "uint8")
    parsed = _parse(record)
    assert parsed["image"][0] == "int64_list"
    assert parsed["image"][1] == pixels.reshape(-1).tolist()
    assert parsed["height"][1] == [32] and parsed["width"][1] == [32] and parsed["channels"][1] == [3]
    assert parsed["label"][1] == [2]
    assert parsed["source_id"][1] == [b"cross/1.png"]
    assert parsed["pixel_dtype"][1] == [b"uint8"]


def test_float_pixels_stay_float_and_keep_their_scale():
    pixels = (np.asarray(shape_image(seed=4)) / 255.0)[np.newaxis]  # float64 in [0, 1]
    [record] = encoding.encode_examples(pixels, [0], ["x.npz[0]"], str(pixels.dtype))
    parsed = _parse(record)
    assert parsed["image"][0] == "float_list"
    np.testing.assert_allclose(parsed["image"][1], pixels.reshape(-1), rtol=1e-6)
    assert max(parsed["image"][1]) <= 1.0
    assert parsed["pixel_dtype"][1] == [b"float64"]


def test_examples_without_labels_have_no_label_feature():
    pixels = np.zeros((2, 4, 4, 1), np.uint8)
    records = encoding.encode_examples(pixels, None, ["a", "b"], "uint8")
    assert len(records) == 2 and "label" not in _parse(records[0])


def test_array_shapes_and_labels_are_checked():
    assert encoding.as_nhwc(np.zeros((3, 5, 5)), "x.npz").shape == (3, 5, 5, 1)
    with pytest.raises(BadInput, match=r"expected images of shape \(N, H, W\)"):
        encoding.as_nhwc(np.zeros((3, 5)), "x.npz")
    assert encoding.labels_from_array(np.array([[1], [2]]), 2, "x.npz").tolist() == [1, 2]
    with pytest.raises(BadInput, match="x has 3 images but y has 2 labels"):
        encoding.labels_from_array(np.array([1, 2]), 3, "x.npz")
    with pytest.raises(BadInput, match="must be integers"):
        encoding.labels_from_array(np.array([0.5, 1.0]), 2, "x.npz")


def test_candidate_image_names():
    assert image_files.is_candidate_image("/d/cat/1.JPG")
    assert not image_files.is_candidate_image("/d/cat/.DS_Store")
    assert not image_files.is_candidate_image("/d/cat/notes.txt")
