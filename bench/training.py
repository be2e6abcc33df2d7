"""Training and serving benchmark on the CIFAR-10 preset.

  .venv/bin/python bench/training.py --data runs/datasets/cifar10/train

  - Runs the CIFAR-10 preset through the pipeline (ingestion .. Trainer) in a
    fresh output root; reads the training record saved with the model.
  - Accuracy of the exported model on the held-out `eval` split (never seen
    by training or early stopping), through its serving_examples signature.
  - Serving throughput at batch 1 and 64: serving_default (uint8 pixels),
    serving_bytes (encoded JPEG) and the bare model on pre-scaled floats.
"""
from __future__ import annotations

import argparse
import glob
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import imgpipe  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import run_cli, write_results  # noqa: E402


def throughput(call, batch, seconds=3.0) -> float:
    call(batch)  # warm-up (tracing)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call(batch)
        count += 1
    return count * len(next(iter(batch.values()))) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output-root", type=Path, default=None,
                        help="Reuse an output root (cached stages are reused); default: fresh.")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "training.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgpipe-bench-training-"))
    root = args.output_root or work / "out"
    try:
        run = run_cli(["run", "--config", "builtin:cifar10", "--data", str(args.data),
                       "--output-root", str(root)])
        import numpy as np
        import tensorflow as tf

        from imgpipe.contract import ARTIFACTS, FEATURES, OUTPUTS, SIGNATURES

        model_dir = max(glob.glob(str(root / "pipelines/imgpipe-cifar10/Trainer/model/*"
                                      / ARTIFACTS.serving_model)),
                        key=lambda p: int(Path(p).parent.name))
        record = json.loads(Path(ARTIFACTS.training_record_path(model_dir)).read_text())
        loaded = tf.saved_model.load(model_dir)
        examples_dir = max(glob.glob(str(root / "pipelines/imgpipe-cifar10/ImageExampleGen/examples/*")),
                           key=lambda p: int(Path(p).name))
        records = list(tf.data.TFRecordDataset(glob.glob(f"{examples_dir}/Split-eval/*.gz"),
                                               compression_type="GZIP").as_numpy_iterator())
        labels = np.array([tf.train.Example.FromString(r).features.feature[FEATURES.label]
                           .int64_list.value[0] for r in records])
        by_examples = loaded.signatures[SIGNATURES.examples]
        predicted = np.concatenate([
            by_examples(**{SIGNATURES.examples_input: tf.constant(records[i:i + 512])})[OUTPUTS.class_id]
            .numpy() for i in range(0, len(records), 512)])
        accuracy = float((predicted == labels).mean())
        trainer_s = run["stages"]["Trainer"]
        epochs = record["epochs_run"]
        train_examples = sum(1 for _ in tf.data.TFRecordDataset(
            glob.glob(f"{examples_dir}/Split-train/*.gz"), compression_type="GZIP"))

        # The eval split keeps the CIFAR-10 JPEGs as they arrived (32x32).
        pixels = np.stack([tf.io.decode_jpeg(tf.train.Example.FromString(r).features
                                             .feature[FEATURES.image_encoded].bytes_list.value[0],
                                             channels=3).numpy() for r in records[:64]])
        jpegs = [tf.io.encode_jpeg(p, quality=95).numpy() for p in pixels]
        serving = loaded.signatures[SIGNATURES.pixels]
        bytes_fn = loaded.signatures[SIGNATURES.bytes]
        speed = {}
        for batch in (1, 64):
            speed[f"batch_{batch}"] = {
                "serving_default_uint8": throughput(
                    lambda b: serving(**b), {SIGNATURES.pixels_input: tf.constant(pixels[:batch])}),
                "serving_bytes_jpeg": throughput(
                    lambda b: bytes_fn(**b), {SIGNATURES.bytes_input: tf.constant(jpegs[:batch])}),
                "bare_model_prescaled_float": throughput(
                    lambda b: loaded(b["x"], training=False),
                    {"x": tf.constant(pixels[:batch].astype(np.float32) / 255.0)}),
            }
        results = {
            "stages_s": run["stages"], "eval_examples": len(records), "eval_accuracy": accuracy,
            "parameters": record["model"]["parameters"], "epochs_run": epochs,
            "best_epoch": record["best_epoch"],
            "best_validation_accuracy": max(record["history"]["val_accuracy"]),
            "trainer_s": trainer_s, "seconds_per_epoch": trainer_s / epochs,
            "train_images_per_s": train_examples * epochs / trainer_s,
            "serving_images_per_s": speed,
        }
        print(json.dumps(results, indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
