"""Transform module file: preprocessing_fn (the logic lives in imgpipe)."""
import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer.transform import preprocess


def preprocessing_fn(inputs, custom_config):
    return preprocess(inputs, height=custom_config["height"], width=custom_config["width"],
                      channels=custom_config["channels"],
                      standardize=custom_config.get("standardize", False))
