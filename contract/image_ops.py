"""The one implementation of image decoding, channel conversion and resizing.

Ingestion runs these TensorFlow ops on every image file, and the exported
serving signature runs the very same functions on request bytes. Using one
decoder and one resize kernel in both places is what keeps the pixels the model
was trained on identical to the pixels it is served (a different JPEG decoder
or resize kernel at serving time is itself a training/serving skew).

All functions work eagerly and inside a traced tf.function/SavedModel graph.
"""
import tensorflow as tf

import imgpipe  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from imgpipe.contract.image_spec import SUPPORTED_CHANNELS, ImageSpec


def decode(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG or PNG bytes into uint8 [h, w, c] with the file's own c.

    libjpeg/libpng inside TensorFlow also do the format-level conversions:
    CMYK JPEG -> RGB, palette PNG -> RGB(A), 1/2/4-bit -> 8-bit, 16-bit PNG ->
    8-bit (high byte).
    """
    return tf.io.decode_image(
        image_bytes, channels=0, dtype=tf.uint8, expand_animations=False)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Converts uint8 [h, w, c] (c in 1..4) to `channels` (1 or 3).

    Rules: an alpha channel is dropped; grey becomes RGB by replicating the
    grey value; RGB becomes grey with ITU-R 601-2 luma (tf.image.rgb_to_grayscale).
    """
    if channels not in SUPPORTED_CHANNELS:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = tf.convert_to_tensor(image)
    source_channels = tf.shape(image)[-1]
    colour = tf.cond(source_channels >= 3,
                     lambda: image[..., :3],
                     lambda: tf.tile(image[..., :1], [1, 1, 3]))
    if channels == 3:
        return tf.ensure_shape(colour, [None, None, 3])
    grey = tf.cond(source_channels >= 3,
                   lambda: tf.image.rgb_to_grayscale(colour),
                   lambda: image[..., :1])
    return tf.ensure_shape(grey, [None, None, 1])


def resize(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Resizes uint8 [h, w, c] to the spec's [height, width, c] with its policy, rounding back to uint8.

    Images already at the target size pass through untouched.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    height, width = spec.height, spec.width

    def _resized():
        scaled = tf.image.resize(image, [height, width], method=spec.resize_method,
                                 antialias=spec.antialias)
        return tf.cast(tf.clip_by_value(tf.round(scaled), 0.0, 255.0), tf.uint8)

    same_size = tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width))
    return tf.cond(same_size, lambda: image, _resized)


def decode_and_prepare(image_bytes: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Encoded bytes -> uint8 [height, width, channels]: the serving path."""
    image = resize(to_channels(decode(image_bytes), spec.channels), spec)
    return tf.ensure_shape(image, list(spec.shape))


def make_batch_decoder(spec: ImageSpec):
    """A compiled decoder for a batch of encoded images.

    Returns pixels uint8 [n, height, width, channels] and each image's decoded
    source shape [n, 3] (ingestion reports conversions from it). One call per
    batch keeps TensorFlow's per-call overhead off the per-image cost.
    """

    def _one(image_bytes):
        decoded = decode(image_bytes)
        prepared = resize(to_channels(decoded, spec.channels), spec)
        return tf.ensure_shape(prepared, list(spec.shape)), tf.shape(decoded)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode_batch(images):
        return tf.map_fn(
            _one, images,
            fn_output_signature=(tf.TensorSpec(list(spec.shape), tf.uint8),
                                 tf.TensorSpec([3], tf.int32)))

    return decode_batch


def decode_items(decoder, items, spec: ImageSpec):
    """Decodes (key, bytes, ImageInfo) items with a batch decoder.

    Returns (decoded, failures, conversions): decoded is [(key, pixels,
    conversion names)], failures [(key, reason)], conversions a Counter. One
    bad image fails a batch call, so a failed batch is retried image by image
    to find which ones.
    """
    from collections import Counter

    from imgpipe.contract import image_files
    decoded, failures, conversions = [], [], Counter()
    if not items:
        return decoded, failures, conversions
    try:
        pixels, shapes = decoder(tf.constant([item[1] for item in items]))
        results = list(zip(items, pixels.numpy(), shapes.numpy()))
    except tf.errors.InvalidArgumentError:
        results = []
        for item in items:
            try:
                single, shape = decoder(tf.constant([item[1]]))
                results.append((item, single.numpy()[0], shape.numpy()[0]))
            except tf.errors.InvalidArgumentError as error:
                message = str(error.message).strip().splitlines()[0][:200]
                failures.append((item[0], f"corrupt or truncated {item[2].format} data ({message})"))
    for (key, _, info), image, shape in results:
        names = image_files.conversions_for(info, shape, spec)
        conversions.update(names)
        decoded.append((key, image, names))
    return decoded, failures, conversions
