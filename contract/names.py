"""Names both sides of the model must spell the same: features, signatures, artifact files.

Every other module imports these objects; none spells the strings itself.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FeatureNames:
    """tf.Example features written by ingestion and read by Transform, TFDV and serving."""
    image: str = "image"              # pixels (int64 or float list, H*W*C values)
    height: str = "height"            # the stored image's: the array's, or the file's
    width: str = "width"
    channels: str = "channels"
    label: str = "label"
    source_id: str = "source_id"      # lineage only: file path or "<file>[<index>]"
    pixel_dtype: str = "pixel_dtype"  # the source's dtype, e.g. "uint8", "float64"
    image_transformed: str = "image_xf"  # Transform's output: float32 [H, W, C]
    # Image files are kept as they arrived (decoded in the Transform graph):
    image_encoded: str = "image_encoded"      # the file's bytes, JPEG or PNG
    image_format: str = "image_format"        # "JPEG" | "PNG"
    exif_orientation: str = "exif_orientation"  # 1..8, 1 = upright or none
    # Per-image properties, on every example (float, computed as the model sees
    # the image): what photo drift moves when pixel histograms blur it.
    brightness: str = "brightness"            # mean luma (ITU-R 601), 0..255
    contrast: str = "contrast"                # RMS contrast: std of luma
    mean_red: str = "mean_red"
    mean_green: str = "mean_green"
    mean_blue: str = "mean_blue"
    aspect_ratio: str = "aspect_ratio"        # source width / height (upright when applied)

    @property
    def properties(self) -> tuple:
        return (self.brightness, self.contrast, self.mean_red, self.mean_green, self.mean_blue,
                self.aspect_ratio)


@dataclasses.dataclass(frozen=True)
class SignatureNames:
    """The exported SavedModel's signatures and their input names."""
    pixels: str = "serving_default"      # uint8 [n, H, W, C]
    bytes: str = "serving_bytes"         # encoded JPEG/PNG [n]
    examples: str = "serving_examples"   # serialized tf.Examples [n]
    transform: str = "transform_features"
    pixels_input: str = "images"
    bytes_input: str = "image_bytes"
    examples_input: str = "examples"


@dataclasses.dataclass(frozen=True)
class OutputNames:
    """Outputs of every serving signature."""
    probabilities: str = "probabilities"
    class_id: str = "class_id"
    class_name: str = "class_name"


@dataclasses.dataclass(frozen=True)
class ArtifactFiles:
    """File and folder names inside artifacts that more than one stage opens."""
    serving_model: str = "Format-Serving"             # the SavedModel inside TFX's Model artifact
    training_record: str = "training_config.json"     # in <SavedModel>/assets/
    push_record: str = "push.json"                    # in the PushedModel artifact
    schema: str = "schema.pbtxt"                      # in a Schema artifact
    # In <SavedModel>/assets/: what a later run's training.weights can start from.
    weights: str = "weights.h5"                       # the whole model's weights
    backbone_weights: str = "backbone_weights.h5"     # a backbone's alone (Keras' notop layout)
    preprocessing_contract: str = "preprocessing_contract.json"   # contract/preprocessing.py

    def training_record_path(self, saved_model_dir: str) -> str:
        import os
        return os.path.join(saved_model_dir, "assets", self.training_record)

    def contract_path(self, saved_model_dir: str) -> str:
        import os
        return os.path.join(saved_model_dir, "assets", self.preprocessing_contract)


FEATURES = FeatureNames()
SIGNATURES = SignatureNames()
OUTPUTS = OutputNames()
ARTIFACTS = ArtifactFiles()
