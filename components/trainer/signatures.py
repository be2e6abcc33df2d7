"""The exported signatures: raw uint8 pixels, encoded bytes, tf.Examples.

All of them call the transform graph (tf.Transform's layer) and then the
model, so preprocessing exists once. Trained on image files (the encoded
layout), the transform graph decodes: serving_bytes hands it the request's
bytes, the very path training took. serving_default's pixels are already at
the spec's size, where decoding and the policies are the identity; what the
graph does after them (scale, standardise) is read back from it at export as
a per-channel affine map and checked there (`pixel_map`), instead of paying
a PNG encode and decode per image (43% of CIFAR-10 throughput at batch 64).
Trained on arrays (the pixel layout), serving_bytes decodes with the shared
image ops first. Inputs are typed: a float tensor sent where uint8 pixels
are expected is refused by the signature itself.
"""
from __future__ import annotations

from typing import Dict, Sequence

import tensorflow as tf

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.contract import FEATURES, OUTPUTS, SIGNATURES, ImageSpec, image_ops


def _as_png(images: tf.Tensor) -> tf.Tensor:
    # Level 0: stored, not compressed; decoding gives the pixels back.
    return tf.map_fn(lambda one: tf.io.encode_png(one, compression=0), images,
                     fn_output_signature=tf.string)


def pixel_map(transform_bytes, image: ImageSpec, tolerance: float = 1e-4):
    """(scale, offset) per channel such that the transform graph maps uint8
    pixels at the spec's size to `pixels * scale + offset`, read from the graph
    itself (black and white probes) and checked on a random image; a
    preprocessing that is not such a map is an error here, at export."""
    random = tf.random.stateless_uniform([1, *image.shape], seed=[7, 17], maxval=256, dtype=tf.int32)
    probes = tf.concat([tf.zeros([1, *image.shape], tf.uint8),
                        tf.fill([1, *image.shape], tf.constant(255, tf.uint8)),
                        tf.cast(random, tf.uint8)], axis=0)
    out = transform_bytes(_as_png(probes))
    offset = out[0, 0, 0]
    scale = (out[1, 0, 0] - offset) / 255.0
    mapped = tf.cast(probes[2], tf.float32) * scale + offset
    error = float(tf.reduce_max(tf.abs(mapped - out[2])))
    if error > tolerance:
        raise ValueError(f"the transform graph is not a per-channel scale and offset of the "
                         f"pixels (largest difference {error:.2e}); serving_default cannot take "
                         "its shortcut")
    return scale, offset


def make_signatures(model, tft_output, image: ImageSpec,
                    class_names: Sequence[str]) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    # Tracked on the model so that the transform graph is saved with it.
    model.tft_layer = tft_output.transform_features_layer()
    names = tf.constant(list(class_names))
    raw_spec = tft_output.raw_feature_spec()
    encoded = FEATURES.image_encoded in raw_spec
    image_feature = FEATURES.image_encoded if encoded else FEATURES.image
    serving_spec = {image_feature: raw_spec[image_feature]}

    def predict(raw_features):
        return classify(model.tft_layer(raw_features)[FEATURES.image_transformed])

    def classify(model_input):
        probabilities = model(model_input, training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {OUTPUTS.probabilities: probabilities, OUTPUTS.class_id: class_id,
                OUTPUTS.class_name: tf.gather(names, class_id)}

    def as_raw(image_bytes):
        shape = list(raw_spec[FEATURES.image_encoded].shape)
        return {FEATURES.image_encoded: tf.reshape(image_bytes, [-1, *shape])}

    def from_bytes(image_bytes):
        if not encoded:
            return from_pixels(image_ops.decode_and_prepare_batch(image_bytes, image))
        return predict(as_raw(image_bytes))

    if encoded:
        scale, offset = pixel_map(
            lambda data: model.tft_layer(as_raw(data))[FEATURES.image_transformed], image)

    def from_pixels(images):
        if encoded:
            return classify(tf.cast(images, tf.float32) * scale + offset)
        return predict({FEATURES.image: tf.cast(images, tf.int64)})

    @tf.function(input_signature=[tf.TensorSpec([None, *image.shape], tf.uint8,
                                                name=SIGNATURES.pixels_input)])
    def serve_pixels(images):
        return from_pixels(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURES.bytes_input)])
    def serve_bytes(image_bytes):
        return from_bytes(image_bytes)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURES.examples_input)])
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, serving_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SIGNATURES.examples_input)])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    return {
        SIGNATURES.pixels: serve_pixels.get_concrete_function(),
        SIGNATURES.bytes: serve_bytes.get_concrete_function(),
        SIGNATURES.examples: serve_examples.get_concrete_function(),
        SIGNATURES.transform: transform_features.get_concrete_function(),
    }
