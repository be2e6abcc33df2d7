"""SavedModels whose serving signatures get the preprocessing wrong while
`serving_examples` (what TFMA scores) stays the trained model's: the traps the
parity gate exists for, built by tests."""
from pathlib import Path

import tensorflow as tf

from imgpipe.contract import ImageSpec, image_ops


def save_wrong_serving(loaded, target: Path, spec: ImageSpec, network, scale: float) -> Path:
    """Save `loaded`'s serving_examples and transform_features beside
    serving_bytes / serving_default that answer with
    `network(pixels * scale, training=False)`, pixels being 0..255 floats."""

    class WrongServing(tf.Module):
        def __init__(self):
            super().__init__()
            self.loaded, self.network = loaded, network

        def _outputs(self, pixels):
            probabilities = self.network(tf.cast(pixels, tf.float32) * scale, training=False)
            return {"probabilities": probabilities, "class_id": tf.argmax(probabilities, axis=-1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serving_bytes(self, image_bytes):
            return self._outputs(image_ops.decode_and_prepare_batch(image_bytes, spec))

        @tf.function(input_signature=[tf.TensorSpec([None, *spec.shape], tf.uint8)])
        def serving_default(self, images):
            return self._outputs(images)

    module = WrongServing()
    tf.saved_model.save(module, str(target), signatures={
        "serving_bytes": module.serving_bytes.get_concrete_function(),
        "serving_default": module.serving_default.get_concrete_function(),
        "serving_examples": loaded.signatures["serving_examples"],
        "transform_features": loaded.signatures["transform_features"]})
    return target
