"""The image contract: everything training and serving must agree on, in one place.

- `FEATURES`, `SIGNATURES`, `OUTPUTS`, `ARTIFACTS` (names.py): feature,
  signature and output names, and the artifact file names more than one
  stage opens.
- `ImageSpec` (image_spec.py): the size of model inputs and the policies
  (resize method, aspect, EXIF orientation) that bring image files to it;
  its JSON form travels in the training record and the registry row.
- `image_files` (Pillow header probe: which files are images, and which are
  refused and why) and `image_ops` (the TensorFlow decode, channel and resize
  ops run at ingestion, in the Transform graph and in the serving signatures).
- `normalization` (what a network's first layer makes of the [0, 1] pixels:
  the backbones' `preprocess_input` conventions as one table).
- `image_properties` (brightness, contrast, R/G/B means, aspect ratio per
  image: computed alike at ingestion, by `imgpipe validate` and by the
  monitor on served samples).

Serving imports only this package and the registry.
"""
from imgpipe.contract.image_spec import ImageSpec
from imgpipe.contract.names import ARTIFACTS, FEATURES, OUTPUTS, SIGNATURES

__all__ = ["ARTIFACTS", "FEATURES", "ImageSpec", "OUTPUTS", "SIGNATURES"]
