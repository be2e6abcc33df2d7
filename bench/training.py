"""Training and serving benchmark on the CIFAR-10 preset, beside the source article's CNN.

  .venv/bin/python bench/training.py --data runs/datasets/cifar10/train

  - Runs the CIFAR-10 preset through the pipeline (ingestion .. push) in a
    fresh output root, then the source article's CNN (the previous preset's
    knobs) in the same output root: same examples, same split (TFX's cache
    reuses ingestion, statistics and Transform).
  - For each: accuracy and per-class F1 of the exported model on the held-out
    `eval` split (never seen by training or early stopping) through its
    serving_examples signature; parameters, Trainer minutes, images/s.
  - Serving throughput of the preset's model at batch 1 and 64:
    serving_default (uint8 pixels), serving_bytes (encoded JPEG) and the bare
    model on pre-scaled floats.
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

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The source article's CNN (Conv32-64-64, Dense 64) with the knobs of the
# preset before issue 18; no floors, so that its run completes unblessed.
SEED_CNN = ["training.model=\"cnn\"", "training.epochs=30", "training.batch_size=64",
            "training.learning_rate=0.001", "training.optimizer=\"adam\"", "training.warmup_epochs=0",
            "training.weight_decay=0.0", "training.label_smoothing=0.0",
            "training.early_stopping_patience=8", "training.augmentation.crop_padding=0",
            "training.augmentation.cutout=0", "training.augmentation.translation=0.1",
            "evaluation.accuracy_floor=0.0", "evaluation.f1_floor=0.0",
            "evaluation.max_accuracy_drop=1.0", "evaluation.max_flip_rate=1.0",
            "evaluation.max_calibration_error=1.0", "fuzz.enabled=false", "registry.promote=false"]


def throughput(call, batch, seconds=3.0) -> float:
    call(batch)  # warm-up (tracing)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call(batch)
        count += 1
    return count * len(next(iter(batch.values()))) / (time.perf_counter() - start)


def newest(pattern: str) -> str:
    return max(glob.glob(pattern), key=lambda p: int(Path(p).parent.name if p.endswith("Serving")
                                                      else Path(p).name))


def eval_records(root: Path):
    import numpy as np
    import tensorflow as tf

    from imgpipe.contract import FEATURES
    examples_dir = newest(str(root / "pipelines/imgpipe-cifar10/ImageExampleGen/examples/*"))
    records = list(tf.data.TFRecordDataset(glob.glob(f"{examples_dir}/Split-eval/*.gz"),
                                           compression_type="GZIP").as_numpy_iterator())
    labels = np.array([tf.train.Example.FromString(r).features.feature[FEATURES.label]
                       .int64_list.value[0] for r in records])
    train_examples = sum(1 for _ in tf.data.TFRecordDataset(
        glob.glob(f"{examples_dir}/Split-train/*.gz"), compression_type="GZIP"))
    return records, labels, train_examples


def scored(root: Path, run: dict, records, labels, train_examples: int) -> dict:
    """Accuracy and per-class F1 on the eval split, through serving_examples."""
    import numpy as np
    import tensorflow as tf
    from sklearn.metrics import f1_score

    from imgpipe.contract import ARTIFACTS, OUTPUTS, SIGNATURES
    model_dir = newest(str(root / "pipelines/imgpipe-cifar10/Trainer/model/*"
                           / Path(ARTIFACTS.serving_model)))
    record = json.loads(Path(ARTIFACTS.training_record_path(model_dir)).read_text())
    loaded = tf.saved_model.load(model_dir)
    by_examples = loaded.signatures[SIGNATURES.examples]
    predicted = np.concatenate([
        by_examples(**{SIGNATURES.examples_input: tf.constant(records[i:i + 512])})[OUTPUTS.class_id]
        .numpy() for i in range(0, len(records), 512)])
    f1 = f1_score(labels, predicted, average=None, labels=list(range(len(CLASSES))))
    trainer_s = run["stages"]["Trainer"]
    epochs = record["epochs_run"]
    return {"model_dir": model_dir, "architecture": record["model"]["architecture"],
            "parameters": record["model"]["parameters"], "epochs_run": epochs,
            "best_epoch": record["best_epoch"], "eval_examples": len(records),
            "eval_accuracy": float((predicted == labels).mean()),
            "f1": {name: round(float(v), 4) for name, v in zip(CLASSES, f1)},
            "min_f1": float(f1.min()), "trainer_s": trainer_s, "trainer_min": trainer_s / 60,
            "seconds_per_epoch": trainer_s / epochs,
            "train_images_per_s": train_examples * epochs / trainer_s,
            "stages_s": run["stages"], "wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"]}


def serving_speed(model_dir: str, records) -> dict:
    import numpy as np
    import tensorflow as tf

    from imgpipe.contract import FEATURES, SIGNATURES
    loaded = tf.saved_model.load(model_dir)
    # The eval split keeps the CIFAR-10 JPEGs as they arrived (32x32).
    pixels = np.stack([tf.io.decode_jpeg(tf.train.Example.FromString(r).features
                                         .feature[FEATURES.image_encoded].bytes_list.value[0],
                                         channels=3).numpy() for r in records[:64]])
    jpegs = [tf.io.encode_jpeg(p, quality=95).numpy() for p in pixels]
    serving, bytes_fn = loaded.signatures[SIGNATURES.pixels], loaded.signatures[SIGNATURES.bytes]
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
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output-root", type=Path, default=None,
                        help="Reuse an output root (cached stages are reused); default: fresh.")
    parser.add_argument("--skip-seed-cnn", action="store_true",
                        help="Only the preset (not the source article's CNN beside it).")
    parser.add_argument("--skip-preset", action="store_true",
                        help="Only the source article's CNN (the split is the same: by hash).")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "training.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgpipe-bench-training-"))
    root = args.output_root or work / "out"
    # Each part is written as soon as it is measured; a part skipped keeps what
    # an earlier run of the script wrote to --output for it.
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    try:
        common = ["--config", "builtin:cifar10", "--data", str(args.data), "--output-root", str(root)]
        if not args.skip_preset:
            preset_run = run_cli(["run", *common], ok=(0, 1))   # 1: trained, not blessed
            records, labels, results["train_examples"] = eval_records(root)
            results["preset"] = scored(root, preset_run, records, labels, results["train_examples"])
            results.pop("serving_images_per_s", None)
            print(json.dumps(results["preset"], indent=1), flush=True)
            write_results(args.output, results)
        if "preset" in results and "serving_images_per_s" not in results:
            records, _, _ = eval_records(root)
            results["serving_images_per_s"] = serving_speed(results["preset"]["model_dir"], records)
            write_results(args.output, results)
        if not args.skip_seed_cnn:
            sets = [item for pair in (("--set", value) for value in SEED_CNN) for item in pair]
            seed_run = run_cli(["run", *common, *sets], ok=(0, 1))
            records, labels, results["train_examples"] = eval_records(root)
            results["seed_cnn"] = scored(root, seed_run, records, labels, results["train_examples"])
            write_results(args.output, results)
        print(json.dumps(results, indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
