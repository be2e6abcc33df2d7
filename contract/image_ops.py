"""The one implementation of image decoding, channel conversion and resizing.

Ingestion runs these TensorFlow ops on every image file, and the exported
serving signature runs the very same functions on request bytes. Using one
decoder and one resize kernel in both places is what keeps the pixels the model
was trained on identical to the pixels it is served (a different JPEG decoder
or resize kernel at serving time is itself a training/serving skew).

All functions work eagerly and inside a traced tf.function/SavedModel graph.
"""
import dataclasses
import functools

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
    """Resizes uint8 [h, w, c] to the spec's [height, width, c] with its method,
    rounding back to uint8 (bicubic's overshoot clipped).

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


# -- EXIF orientation ---------------------------------------------------------------

_EXIF_MARKER = "Exif\x00\x00"
_EXIF_SEARCH_BYTES = 65536        # APP1 sits at the start of a JPEG, within 64 KiB
_ORIENTATION_TAG = 0x0112
_MAX_IFD_ENTRIES = 64


def exif_orientation(image_bytes: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (1..8) of JPEG bytes; 1 (upright) when there is none
    or it cannot be read. TIFF header and IFD0 read with tensor ops, so the
    serving signature reads it as ingestion does; files without an EXIF block
    (most PNGs and small JPEGs) pay only for the search."""
    head = tf.strings.substr(image_bytes, 0, _EXIF_SEARCH_BYTES)
    parts = tf.strings.split(head, sep=_EXIF_MARKER, maxsplit=1)
    found = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 2), b"\xff\xd8"),
                           tf.equal(tf.size(parts), 2))
    return tf.cond(found, lambda: _tiff_orientation(parts[-1]), lambda: tf.constant(1, tf.int32))


def _tiff_orientation(tiff: tf.Tensor) -> tf.Tensor:
    """Orientation tag of IFD0 in a TIFF block (what follows "Exif\\0\\0"), else 1."""
    raw = tf.cast(tf.io.decode_raw(tiff, tf.uint8), tf.int64)
    size = tf.size(raw, out_type=tf.int64)
    data = tf.concat([raw, tf.zeros([2], tf.int64)], 0)       # never gather from nothing
    little = tf.reduce_all(tf.equal(data[:2], 0x49))            # "II"; "MM" is big-endian
    big = tf.reduce_all(tf.equal(data[:2], 0x4D))

    def byte(index):
        return tf.gather(data, tf.clip_by_value(index, 0, size + 1))

    def u16(index):
        first, second = byte(index), byte(index + 1)
        return tf.where(little, first + 256 * second, 256 * first + second)

    def u32(index):
        first, second = u16(index), u16(index + 2)
        return tf.where(little, first + 65536 * second, 65536 * first + second)

    ifd = u32(tf.constant(4, tf.int64))
    count = tf.minimum(u16(ifd), _MAX_IFD_ENTRIES)
    entries = ifd + 2 + 12 * tf.range(count)
    matches = tf.equal(u16(entries), _ORIENTATION_TAG)
    value = tf.reduce_max(tf.where(matches, u16(entries + 8), tf.zeros_like(entries)))
    readable = tf.logical_and(tf.logical_or(little, big), ifd + 2 + 12 * count <= size)
    valid = tf.logical_and(readable, tf.logical_and(value >= 1, value <= 8))
    return tf.cast(tf.where(valid, value, 1), tf.int32)


def upright(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Turns uint8 [h, w, c] upright for an EXIF orientation, as PIL's
    ImageOps.exif_transpose does (5..8 swap height and width).

    Each orientation is a transpose, then a left-right and an up-down flip, or
    not: 6 (turned 90 degrees clockwise) is transpose + left-right, 8 is
    transpose + up-down. Three conditionals, not an 8-way switch: tf.Transform
    cannot serialize a switch's list of branch functions."""
    orientation = tf.clip_by_value(tf.cast(orientation, tf.int32), 1, 8)

    def when(flag, turn, picture):
        return tf.cond(flag, lambda: turn(picture), lambda: picture)

    image = when(orientation >= 5, tf.image.transpose, image)
    image = when(tf.reduce_any(tf.equal(orientation, [2, 3, 6, 7])), tf.image.flip_left_right, image)
    return when(tf.reduce_any(tf.equal(orientation, [3, 4, 7, 8])), tf.image.flip_up_down, image)


# -- aspect ratio ---------------------------------------------------------------------

def fit_aspect(image: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """uint8 [h, w, c] brought to the spec's height:width ratio by its aspect
    policy: "crop" keeps the centre, "pad" letterboxes with black (as Keras's
    crop_to_aspect_ratio / pad_to_aspect_ratio), "stretch" leaves it for resize."""
    if spec.aspect == "stretch":
        return image
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    # The side that fits the target ratio for the other side, rounded.
    ratio_height = tf.cast(tf.round(tf.cast(width, tf.float64) * spec.height / spec.width), tf.int32)
    ratio_width = tf.cast(tf.round(tf.cast(height, tf.float64) * spec.width / spec.height), tf.int32)
    if spec.aspect == "crop":
        new_height, new_width = tf.minimum(height, ratio_height), tf.minimum(width, ratio_width)
        return tf.image.crop_to_bounding_box(image, (height - new_height) // 2,
                                             (width - new_width) // 2, new_height, new_width)
    new_height, new_width = tf.maximum(height, ratio_height), tf.maximum(width, ratio_width)
    return tf.image.pad_to_bounding_box(image, (new_height - height) // 2,
                                        (new_width - width) // 2, new_height, new_width)


def prepare(decoded: tf.Tensor, orientation: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """A decoded file's pixels and EXIF orientation -> uint8 [height, width,
    channels], by the spec's policies: orientation, channels, aspect, resize."""
    if spec.exif_orientation == "apply":
        decoded = upright(decoded, orientation)
    prepared = resize(fit_aspect(to_channels(decoded, spec.channels), spec), spec)
    return tf.ensure_shape(prepared, list(spec.shape))


def decode_and_prepare(image_bytes: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Encoded bytes -> uint8 [height, width, channels]: the serving path."""
    orientation = (exif_orientation(image_bytes) if spec.exif_orientation == "apply"
                   else tf.constant(1, tf.int32))
    return prepare(decode(image_bytes), orientation, spec)


def _orientations(image_bytes: tf.Tensor) -> tf.Tensor:
    """EXIF orientations of a batch [n]; found with vectorised string ops first,
    so a batch without any EXIF block runs no per-image op for it."""
    head = tf.strings.substr(image_bytes, 0, _EXIF_SEARCH_BYTES)
    has_marker = tf.equal(tf.strings.split(head, sep=_EXIF_MARKER, maxsplit=1).row_lengths(), 2)
    candidates = tf.logical_and(tf.equal(tf.strings.substr(head, 0, 2), b"\xff\xd8"), has_marker)
    return tf.cond(tf.reduce_any(candidates),
                   lambda: tf.map_fn(exif_orientation, image_bytes, fn_output_signature=tf.int32),
                   lambda: tf.ones_like(candidates, tf.int32))


def _by_orientation(one, image_bytes: tf.Tensor, orientations: tf.Tensor, spec: ImageSpec,
                    signature):
    """map_fn of `one(bytes, orientation, spec)` over a batch. A batch without
    any EXIF turn (the usual case) skips the orientation ops altogether: inside
    map_fn every op costs, about 35 us an image for the turn."""
    ignoring = dataclasses.replace(spec, exif_orientation="ignore")

    def run(with_spec):
        return tf.map_fn(lambda args: one(args[0], args[1], with_spec),
                         (image_bytes, orientations), fn_output_signature=signature)

    if spec.exif_orientation == "ignore":
        return run(spec)
    return tf.cond(tf.reduce_all(tf.equal(orientations, 1)), lambda: run(ignoring),
                   lambda: run(spec))


def decode_and_prepare_batch(image_bytes: tf.Tensor, spec: ImageSpec) -> tf.Tensor:
    """Encoded bytes [n] -> uint8 [n, height, width, channels]: what the
    serving_bytes signature runs on a request."""
    return _by_orientation(lambda data, orientation, with_spec: prepare(
                               decode(data), orientation, with_spec),
                           image_bytes, _orientations(image_bytes), spec,
                           tf.TensorSpec(list(spec.shape), tf.uint8))


@functools.lru_cache(maxsize=8)
def make_batch_decoder(spec: ImageSpec):
    """A compiled decoder for a batch of encoded images (one per spec and
    process: tracing it costs a few tenths of a second).

    Returns pixels uint8 [n, height, width, channels], each image's decoded
    source shape [n, 3], EXIF orientation [n] and pixel properties
    (image_properties; on the prepared pixels). Ingestion reports conversions
    from them. One call per batch keeps TensorFlow's per-call overhead off the
    per-image cost.
    """
    from imgpipe.contract.image_properties import pixel_properties

    def _one(image_bytes, orientation, with_spec):
        decoded = decode(image_bytes)
        return prepare(decoded, orientation, with_spec), tf.shape(decoded)

    # No AutoGraph: nothing here branches on a tensor in Python (tf.cond and
    # tf.map_fn do), and converting the code took 1.2 of the 1.6 s of tracing.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def decode_batch(images):
        orientations = _orientations(images)
        pixels, shapes = _by_orientation(
            _one, images, orientations, spec,
            (tf.TensorSpec(list(spec.shape), tf.uint8), tf.TensorSpec([3], tf.int32)))
        return pixels, shapes, orientations, pixel_properties(pixels)

    return decode_batch


@dataclasses.dataclass
class Decoded:
    """One decoded image file, as ingestion and `imgpipe validate` keep it."""
    key: str
    data: bytes                  # the file's bytes, as they arrived
    format: str                  # "JPEG" | "PNG"
    pixels: object               # uint8 [height, width, channels], as the model sees it
    shape: tuple                 # the decoded file's (height, width, channels)
    orientation: int             # EXIF orientation, 1..8
    properties: dict             # pixel properties (image_properties), floats
    conversions: list            # conversion names (image_files.conversions_for)


def _run_decoder(decoder, items):
    """[(item, pixels, shape, orientation, properties)], [(key, reason)]. One
    bad image fails a batch call, so a failed batch is retried image by image
    to find which ones."""
    def call(batch):
        pixels, shapes, orientations, properties = decoder(tf.constant([i[1] for i in batch]))
        values = {name: value.numpy() for name, value in properties.items()}
        return [(item, p, s, int(o), {name: float(v[k]) for name, v in values.items()})
                for k, (item, p, s, o) in enumerate(zip(batch, pixels.numpy(), shapes.numpy(),
                                                        orientations.numpy()))]
    try:
        return call(items), []
    except tf.errors.InvalidArgumentError:
        results, failures = [], []
        for item in items:
            try:
                results += call([item])
            except tf.errors.InvalidArgumentError as error:
                message = str(error.message).strip().splitlines()[0][:200]
                failures.append((item[0], f"corrupt or truncated {item[2].format} data ({message})"))
        return results, failures


def decode_items(decoder, items, spec: ImageSpec):
    """Decodes (key, bytes, ImageInfo) items with a batch decoder.

    Returns (decoded, failures, conversions): decoded is [Decoded], failures
    [(key, reason)], conversions a Counter.
    """
    from collections import Counter

    from imgpipe.contract import image_files
    conversions = Counter()
    if not items:
        return [], [], conversions
    results, failures = _run_decoder(decoder, items)
    decoded = []
    for (key, data, info), image, shape, orientation, properties in results:
        names = image_files.conversions_for(info, shape, spec, orientation)
        conversions.update(names)
        decoded.append(Decoded(key, data, info.format, image, tuple(int(v) for v in shape),
                               orientation, properties, names))
    return decoded, failures, conversions
