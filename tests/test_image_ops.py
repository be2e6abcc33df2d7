"""The shared decode/convert/resize ops used by ingestion and serving."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import encode, shape_image
from imgpipe.contract import ImageSpec, image_ops


def prepare(data: bytes, height=32, width=32, channels=3) -> np.ndarray:
    return image_ops.decode_and_prepare(tf.constant(data), ImageSpec(height, width, channels)).numpy()


def test_png_rgb_round_trips_exactly_as_uint8():
    image = shape_image("square", seed=1)
    out = prepare(encode(image, "PNG"))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, np.asarray(image))


def test_jpeg_decodes_to_the_target_shape():
    out = prepare(encode(shape_image("circle", seed=2), "JPEG"))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)


def test_grayscale_becomes_rgb_by_replication():
    grey = shape_image("cross", seed=3).convert("L")
    out = prepare(encode(grey, "PNG"))
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], np.asarray(grey))


def test_rgba_drops_alpha_and_keeps_colour():
    rgba = shape_image("triangle", seed=4).convert("RGBA")
    rgba.putalpha(128)
    out = prepare(encode(rgba, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(rgba)[..., :3])


def test_grey_alpha_becomes_rgb():
    la = shape_image("circle", seed=5).convert("LA")
    out = prepare(encode(la, "PNG"))
    np.testing.assert_array_equal(out[..., 1], np.asarray(la)[..., 0])


def test_palette_png_expands_to_its_rgb_colours():
    palette = shape_image("square", seed=6).convert("P")
    out = prepare(encode(palette, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(palette.convert("RGB")))


def test_cmyk_jpeg_becomes_rgb():
    cmyk = shape_image("cross", seed=7).convert("CMYK")
    out = prepare(encode(cmyk, "JPEG", quality=95))
    assert out.shape == (32, 32, 3)
    reference = np.asarray(shape_image("cross", seed=7)).astype(int)
    assert np.abs(out.astype(int) - reference).mean() < 20


def test_sixteen_bit_png_keeps_the_high_byte():
    grey = np.asarray(shape_image("circle", seed=8).convert("L")).astype(np.uint16) * 257
    out = prepare(encode(Image.fromarray(grey), "PNG"), channels=1)
    np.testing.assert_array_equal(out[..., 0], (grey >> 8).astype(np.uint8))


def test_one_bit_png_becomes_0_and_255():
    bilevel = shape_image("square", seed=9).convert("1")
    out = prepare(encode(bilevel, "PNG"), channels=1)
    assert set(np.unique(out)) <= {0, 255}
    np.testing.assert_array_equal(out[..., 0] > 0, np.asarray(bilevel))


def test_rgb_to_grayscale_uses_tf_luma():
    image = shape_image("triangle", seed=10)
    out = prepare(encode(image, "PNG"), channels=1)
    expected = tf.image.rgb_to_grayscale(np.asarray(image)).numpy()
    np.testing.assert_array_equal(out, expected)


def test_other_sizes_are_resized_with_the_shared_kernel():
    big = shape_image("circle", seed=11, size=48)
    out = prepare(encode(big, "PNG"))
    expected = tf.image.resize(np.asarray(big), [32, 32], method="bilinear", antialias=True)
    expected = np.clip(np.round(expected.numpy()), 0, 255).astype(np.uint8)
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, expected)


def test_non_square_target_size():
    out = prepare(encode(shape_image("square", seed=12), "PNG"), height=24, width=40)
    assert out.shape == (24, 40, 3)


def test_batch_decoder_matches_the_single_image_path():
    images = [encode(shape_image("circle", seed=20), "PNG"),
              encode(shape_image("cross", seed=21, size=48), "JPEG"),
              encode(shape_image("square", seed=22).convert("L"), "PNG")]
    decoder = image_ops.make_batch_decoder(ImageSpec(32, 32, 3))
    pixels, shapes = decoder(tf.constant(images))
    for data, batch_pixels in zip(images, pixels.numpy()):
        np.testing.assert_array_equal(batch_pixels, prepare(data))
    assert shapes.numpy().tolist() == [[32, 32, 3], [48, 48, 3], [32, 32, 1]]


def test_corrupt_bytes_raise_invalid_argument():
    data = encode(shape_image("circle", seed=30), "JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError):
        prepare(data[: len(data) // 3])


def test_unsupported_channel_count_is_refused():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        image_ops.to_channels(np.zeros((2, 2, 3), np.uint8), 4)
