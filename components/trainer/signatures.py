"""The exported signatures: raw uint8 pixels, encoded bytes, tf.Examples.

All of them call the transform graph (tf.Transform's layer) and then the
model, so preprocessing exists once. Trained on image files (the encoded
layout), the transform graph decodes: serving_bytes hands it the request's
bytes, the very path training took, and serving_default wraps its pixels as
uncompressed PNGs, which decode to themselves. Trained on arrays (the pixel
layout), serving_bytes decodes with the shared image ops first. Inputs are
typed: a float tensor sent where uint8 pixels are expected is refused by the
signature itself.
"""
from __future__ import annotations

from typing import Dict, Sequence

import tensorflow as tf

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.contract import FEATURES, OUTPUTS, SIGNATURES, ImageSpec, image_ops


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
        transformed = model.tft_layer(raw_features)
        probabilities = model(transformed[FEATURES.image_transformed], training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {OUTPUTS.probabilities: probabilities, OUTPUTS.class_id: class_id,
                OUTPUTS.class_name: tf.gather(names, class_id)}

    def from_bytes(image_bytes):
        if not encoded:
            return from_pixels(image_ops.decode_and_prepare_batch(image_bytes, image))
        feature_shape = list(raw_spec[FEATURES.image_encoded].shape)
        return predict({FEATURES.image_encoded: tf.reshape(image_bytes, [-1, *feature_shape])})

    def from_pixels(images):
        if encoded:
            # Level 0: stored, not compressed; decoding gives the pixels back.
            return from_bytes(tf.map_fn(lambda one: tf.io.encode_png(one, compression=0), images,
                                        fn_output_signature=tf.string))
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
