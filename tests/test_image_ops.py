"""The shared decode/convert/resize ops used by ingestion and serving."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import encode, shape_image
from imgpipe.contract import ImageSpec, image_files, image_ops


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
    pixels, shapes, orientations, _ = decoder(tf.constant(images))
    for data, batch_pixels in zip(images, pixels.numpy()):
        np.testing.assert_array_equal(batch_pixels, prepare(data))
    assert shapes.numpy().tolist() == [[32, 32, 3], [48, 48, 3], [32, 32, 1]]
    assert orientations.numpy().tolist() == [1, 1, 1]


def test_corrupt_bytes_raise_invalid_argument():
    data = encode(shape_image("circle", seed=30), "JPEG")
    with pytest.raises(tf.errors.InvalidArgumentError):
        prepare(data[: len(data) // 3])


def test_unsupported_channel_count_is_refused():
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        image_ops.to_channels(np.zeros((2, 2, 3), np.uint8), 4)


# -- policies: EXIF orientation, aspect, resize method ---------------------------------

def marked_photo(size=(90, 60)) -> Image.Image:
    """An asymmetric picture (corners of different colours), so any turn or flip shows."""
    width, height = size
    pixels = np.full((height, width, 3), 128, np.uint8)
    pixels[: height // 3, : width // 3] = [250, 10, 10]
    pixels[-height // 3:, -width // 3:] = [10, 10, 250]
    pixels[: height // 4, -width // 4:] = [10, 240, 10]
    return Image.fromarray(pixels)


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_read_and_applied_as_pil_exif_transpose_does(orientation):
    from PIL import ImageOps
    data = jpeg_with_orientation(marked_photo(), orientation)
    assert int(image_ops.exif_orientation(tf.constant(data))) == orientation
    turned = image_ops.upright(image_ops.decode(tf.constant(data)), tf.constant(orientation)).numpy()
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert turned.shape == expected.shape
    # TensorFlow's and Pillow's JPEG decoders differ by a few levels; a wrong
    # turn would differ by hundreds (the corners are red, blue, green, grey).
    assert np.abs(turned.astype(int) - expected).mean() < 2


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8", b"\xff\xd8Exif\x00\x00MM\x00*\xff\xff\xff\xff",
    b"\xff\xd8Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff", b"\x89PNG\r\n\x1a\nExif\x00\x00"])
def test_missing_or_broken_exif_reads_as_upright(data):
    assert int(image_ops.exif_orientation(tf.constant(data))) == 1


def test_aspect_policies_crop_the_centre_or_letterbox_in_black():
    landscape = np.zeros((40, 80, 3), np.uint8)
    landscape[:, 20:60] = 200                                 # the centre square is bright
    spec = {aspect: ImageSpec(20, 20, 3, aspect=aspect) for aspect in ("stretch", "crop", "pad")}
    cropped = image_ops.fit_aspect(tf.constant(landscape), spec["crop"]).numpy()
    assert cropped.shape == (40, 40, 3) and cropped.min() == 200
    padded = image_ops.fit_aspect(tf.constant(landscape), spec["pad"]).numpy()
    assert padded.shape == (80, 80, 3)
    assert padded[:20].max() == 0 and padded[60:].max() == 0   # black bars above and below
    np.testing.assert_array_equal(padded[20:60], landscape)
    assert image_ops.fit_aspect(tf.constant(landscape), spec["stretch"]).shape == (40, 80, 3)


@pytest.mark.parametrize("aspect", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("picture", ["rotated", "portrait", "landscape"])
def test_ingested_pixels_equal_the_serving_signatures_for_every_policy(tmp_path, aspect, picture):
    """Ingestion's batch decoder (eager, Python around it) against the
    function the serving_bytes signature runs, saved and reloaded."""
    data = {"rotated": jpeg_with_orientation(marked_photo((96, 64)), 6),
            "portrait": encode(marked_photo((48, 80)), "JPEG"),
            "landscape": encode(marked_photo((120, 50)), "PNG")}[picture]
    spec = ImageSpec(24, 32, 3, aspect=aspect, exif_orientation="apply", resize_method="area")

    class Serving(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def pixels(self, image_bytes):
            return image_ops.decode_and_prepare_batch(image_bytes, spec)

    tf.saved_model.save(Serving(), str(tmp_path / "serving"))
    served = tf.saved_model.load(str(tmp_path / "serving")).pixels(tf.constant([data])).numpy()[0]
    info = image_files.probe_image(data)
    [checked], failures, _ = image_ops.decode_items(
        image_ops.make_batch_decoder(spec), [("photo", data, info)], spec)
    assert not failures
    ingested, conversions = checked.pixels, checked.conversions
    assert np.abs(ingested.astype(int) - served).max() <= 1
    # What training sees: the Transform graph's decode of the stored example.
    from imgpipe.components.trainer import transform
    trained = transform.raw_pixels({"image_encoded": tf.constant([[data]])}, spec).numpy()[0]
    assert np.abs(trained.astype(int) - served).max() <= 1
    # What the picture is, upright (Pillow's exif_transpose), through the same fit and resize.
    from PIL import ImageOps
    seen = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    expected = image_ops.resize(image_ops.fit_aspect(tf.constant(seen), spec), spec).numpy()
    assert np.abs(ingested.astype(int) - expected).mean() < 3
    if picture == "rotated":
        assert "EXIF orientation 6 applied" in conversions
    if aspect != "stretch":
        assert image_files.ASPECT_FITTED[aspect] in conversions


def test_a_spec_refuses_unknown_policies_and_old_records_mean_ignore():
    with pytest.raises(ValueError, match="aspect must be one of"):
        ImageSpec(32, 32, 3, aspect="squash")
    with pytest.raises(ValueError, match="exif_orientation must be one of"):
        ImageSpec(32, 32, 3, exif_orientation="auto")
    old = ImageSpec.from_record({"image_spec": {"height": 32, "width": 32, "channels": 3,
                                                "resize_method": "bilinear", "antialias": True}})
    assert (old.aspect, old.exif_orientation) == ("stretch", "ignore")
    assert ImageSpec(32, 32, 3, aspect="crop", exif_orientation="apply").describe_policies() == \
        "resize bilinear (antialiased), aspect crop, EXIF orientation applied"


def test_a_batch_mixing_turned_and_plain_images_turns_only_the_turned_ones():
    spec = ImageSpec(32, 32, 3, exif_orientation="apply")
    images = [encode(marked_photo(), "PNG"), jpeg_with_orientation(marked_photo(), 8),
              encode(marked_photo(), "JPEG")]
    pixels, shapes, orientations, _ = image_ops.make_batch_decoder(spec)(tf.constant(images))
    assert orientations.numpy().tolist() == [1, 8, 1]
    for data, batch_pixels in zip(images, pixels.numpy()):
        np.testing.assert_array_equal(batch_pixels,
                                      image_ops.decode_and_prepare(tf.constant(data), spec).numpy())
    served = image_ops.decode_and_prepare_batch(tf.constant(images), spec).numpy()
    np.testing.assert_array_equal(served, pixels.numpy())
