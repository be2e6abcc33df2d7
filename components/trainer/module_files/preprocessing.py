"""Transform module file: preprocessing_fn (the logic lives in imgpipe)."""
import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from imgpipe.components.trainer.settings import TransformSettings
from imgpipe.components.trainer.transform import preprocess


def preprocessing_fn(inputs, custom_config):
    return preprocess(inputs, TransformSettings.from_dict(custom_config))
