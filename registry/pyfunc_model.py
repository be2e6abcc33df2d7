"""MLflow pyfunc wrapping an imgpipe SavedModel ("models from code").

`mlflow.tensorflow.log_model` wants a Keras model object, not an exported
SavedModel; this file is logged with the model and executed by
`mlflow.pyfunc.load_model`, so it imports only what the model's pip
requirements install (no imgpipe).

Input: a DataFrame with an `image` column of encoded image bytes (JPEG/PNG),
sent to the `serving_bytes` signature, whose graph decodes, resizes and
scales exactly as training did. Output: class, class_id, confidence per
input. (uint8 arrays go to the SavedModel's `serving_default` directly.)
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402

# The contract's names (imgpipe.contract SIGNATURES/OUTPUTS), spelled here
# because this file runs without imgpipe; a test keeps them equal.
BYTES_SIGNATURE = "serving_bytes"
BYTES_INPUT = "image_bytes"
PROBABILITIES, CLASS_ID, CLASS_NAME = "probabilities", "class_id", "class_name"


class SavedModelClassifier(mlflow.pyfunc.PythonModel):
    BATCH = 64

    def load_context(self, context):
        import tensorflow as tf
        self._model = tf.saved_model.load(context.artifacts["saved_model"])

    def predict(self, context, model_input, params=None):
        import tensorflow as tf
        images = list(model_input["image"])
        rows = []
        for start in range(0, len(images), self.BATCH):
            outputs = self._model.signatures[BYTES_SIGNATURE](**{
                BYTES_INPUT: tf.constant(images[start:start + self.BATCH], dtype=tf.string)})
            for class_name, class_id, probabilities in zip(
                    outputs[CLASS_NAME].numpy(), outputs[CLASS_ID].numpy(),
                    outputs[PROBABILITIES].numpy()):
                rows.append({"class": class_name.decode(), "class_id": int(class_id),
                             "confidence": float(probabilities.max())})
        return pd.DataFrame(rows, columns=["class", "class_id", "confidence"])


mlflow.models.set_model(SavedModelClassifier())
