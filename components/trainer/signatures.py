"""The exported signatures: raw uint8 pixels, encoded bytes, tf.Examples.

All of them call the transform graph (tf.Transform's layer) and then the
model, so preprocessing exists once. serving_bytes decodes with the very
image ops ingestion used. Inputs are typed: a float tensor sent where uint8
pixels are expected is refused by the signature itself.
"""
from __future__ import annotations

from typing import Dict, Sequence

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from imgpipe.components.image_example_gen import encoding, image_ops
from imgpipe.components.trainer.transform import IMAGE_XF

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
SERVING_EXAMPLES = "serving_examples"
TRANSFORM_FEATURES = "transform_features"


def make_signatures(model, tft_output, image_shape: Sequence[int],
                    class_names: Sequence[str]) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    height, width, channels = (int(v) for v in image_shape)
    # Tracked on the model so that the transform graph is saved with it.
    model.tft_layer = tft_output.transform_features_layer()
    names = tf.constant(list(class_names))
    raw_spec = tft_output.raw_feature_spec()
    serving_spec = {k: v for k, v in raw_spec.items() if k == encoding.IMAGE_FEATURE}

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        probabilities = model(transformed[IMAGE_XF], training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {"probabilities": probabilities, "class_id": class_id,
                "class_name": tf.gather(names, class_id)}

    def from_pixels(images):
        return predict({encoding.IMAGE_FEATURE: tf.cast(images, tf.int64)})

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8,
                                                name="images")])
    def serve_pixels(images):
        return from_pixels(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda data: image_ops.decode_and_prepare(data, height, width, channels), image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8))
        return from_pixels(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, serving_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(examples):
        return model.tft_layer(tf.io.parse_example(examples, raw_spec))

    return {
        SERVING_DEFAULT: serve_pixels.get_concrete_function(),
        SERVING_BYTES: serve_bytes.get_concrete_function(),
        SERVING_EXAMPLES: serve_examples.get_concrete_function(),
        TRANSFORM_FEATURES: transform_features.get_concrete_function(),
    }
