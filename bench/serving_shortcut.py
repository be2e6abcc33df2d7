"""serving_default of a model trained on image files: the per-channel map read
back from the transform graph, against the uncompressed-PNG round trip it
replaced, serving_bytes and the bare model, in one process.

  .venv/bin/python bench/serving_shortcut.py      (after `make run`: the quickstart model)

Results in bench/results/serving_shortcut.json.
"""
from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from training import throughput  # noqa: E402


def main() -> None:
    import tensorflow as tf

    from imgpipe.contract import SIGNATURES, ImageSpec, image_ops
    model_dir = max(glob.glob(str(REPO / "runs/pipelines/imgpipe-quickstart/Trainer/model/*")),
                    key=lambda p: int(Path(p).name))
    model = tf.saved_model.load(str(Path(model_dir) / "Format-Serving"))
    spec = ImageSpec(32, 32, 3, exif_orientation="apply")
    files = sorted(glob.glob(str(REPO / "runs/datasets/quickstart/*/*")))[:64]
    pixels = np.stack([image_ops.decode_and_prepare(tf.constant(Path(f).read_bytes()), spec).numpy()
                       for f in files])
    jpegs = [tf.io.encode_jpeg(p, quality=95).numpy() for p in pixels]
    by_bytes = model.signatures[SIGNATURES.bytes]

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8)])
    def png_round_trip(images):
        data = tf.map_fn(lambda one: tf.io.encode_png(one, compression=0), images,
                         fn_output_signature=tf.string)
        return by_bytes(**{SIGNATURES.bytes_input: data})

    calls = {
        "serving_default (per-channel map)": lambda n: (
            lambda b: model.signatures[SIGNATURES.pixels](**b),
            {SIGNATURES.pixels_input: tf.constant(pixels[:n])}),
        "PNG round trip into serving_bytes (replaced)": lambda n: (
            lambda b: png_round_trip(b["x"]), {"x": tf.constant(pixels[:n])}),
        "serving_bytes (JPEG)": lambda n: (
            lambda b: by_bytes(**b), {SIGNATURES.bytes_input: tf.constant(jpegs[:n])}),
        "bare model on pre-scaled float32": lambda n: (
            lambda b: model(b["x"], training=False),
            {"x": tf.constant(pixels[:n].astype(np.float32) / 255.0)}),
    }
    results = {"model": model_dir, "images_per_s": {
        f"batch_{n}": {name: round(throughput(*make(n))) for name, make in calls.items()}
        for n in (1, 64)}}
    default = model.signatures[SIGNATURES.pixels](**{SIGNATURES.pixels_input: tf.constant(pixels)})
    wrapped = png_round_trip(tf.constant(pixels))
    results["max_abs_difference"] = float(np.abs(default["probabilities"].numpy()
                                                 - wrapped["probabilities"].numpy()).max())
    print(json.dumps(results, indent=1))
    write_results(REPO / "bench" / "results" / "serving_shortcut.json", results)


if __name__ == "__main__":
    main()
