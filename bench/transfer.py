"""Transfer learning on the hymenoptera photos: MobileNetV2 untrained vs started from a file.

  make bench-transfer    (needs ../shared/datasets/hymenoptera.tar)

Both through the whole pipeline (`imgpipe run`, 160x160, the set's own
train/ val/ folders), in one output root so that ingestion, statistics and
Transform are shared:

  1. `training.model = "mobilenet_v2"`, `weights = "none"`: the whole network
     trains from random weights (one phase).
  2. The same model started from the backbone weights run 1 saved
     (`backbone_weights.h5`, Keras' "notop" layout: the code path Keras'
     imagenet weights take), phase 1 on the head with the backbone frozen,
     phase 2 fine-tuning its top layers at a tenth of the rate.

For each: accuracy on the eval split, Trainer seconds, seconds per epoch (per
phase from the Trainer's console lines), peak RSS of the run, and the
exported serving_bytes signature's latency per image (one JPEG per call,
median of 50 after a warm-up).
"""
from __future__ import annotations

import argparse
import glob
import json
import re
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from measure import measure  # noqa: E402

IMGPIPE = REPO / ".venv" / "bin" / "imgpipe"
SIDE = 160
SETS = ["--set", f"image.height={SIDE}", "--set", f"image.width={SIDE}",
        "--set", "data.classes=['ants','bees']", "--set", "pipeline.name='transfer'",
        "--set", "training.model='mobilenet_v2'", "--set", "training.batch_size=32",
        "--set", "training.optimizer='adam'", "--set", "training.dropout=0.2",
        "--set", "evaluation.f1_floor=0", "--set", "evaluation.accuracy_floor=0",
        "--set", "evaluation.max_accuracy_drop=1.0", "--set", "registry.promote=false"]
EPOCH_LINE = re.compile(r"(?:\[(?P<phase>[\w-]+)\] )?epoch (?P<n>\d+)/\d+ .* (?P<s>[\d.]+)s  best")


def newest(pattern: str) -> Path:
    return Path(max(glob.glob(pattern), key=lambda p: int(Path(p).name)))


def run(root: Path, schema: Path, out: Path, extra) -> dict:
    result = measure([IMGPIPE, "run", "--data", root, "--output-root", out, *SETS,
                      "--set", f"validation.schema_file='{schema}'", *extra], keep_output=True)
    text = result.pop("out")
    per_phase = {}
    for match in EPOCH_LINE.finditer(text):
        per_phase.setdefault(match.group("phase") or "train", []).append(float(match.group("s")))
    stages = {name: float(s) for name, s in re.findall(r"\[done \] (\w+)\s+([\d.]+)s", text)}
    model_dir = newest(str(out / "pipelines" / "transfer" / "Trainer" / "model" / "*")) / "Format-Serving"
    report = json.loads((newest(str(out / "pipelines" / "transfer" / "EvaluationGate" / "report" / "*"))
                         / "evaluation_report.json").read_text())
    record = json.loads((model_dir / "assets" / "training_config.json").read_text())
    return {**result, "trainer_s": stages.get("Trainer"), "stages_s": stages,
            "seconds_per_epoch": {phase: round(statistics.median(times[1:] or times), 2)
                                  for phase, times in per_phase.items()},
            "first_epoch_s": {phase: times[0] for phase, times in per_phase.items()},
            "eval_accuracy": report["accuracy"], "served_accuracy": report["parity"]["served_accuracy"],
            "phases": record["phases"], "weights": record["weights"],
            "parameters": record["model"]["parameters"], "model_dir": str(model_dir)}


def bytes_latency_ms(model_dir: str, jpeg: bytes) -> float:
    import tensorflow as tf

    import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    signature = tf.saved_model.load(model_dir).signatures["serving_bytes"]
    batch = {"image_bytes": tf.constant([jpeg])}
    signature(**batch)
    times = []
    for _ in range(50):
        start = time.perf_counter()
        signature(**batch)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tar", type=Path,
                        default=REPO.parent / "shared" / "datasets" / "hymenoptera.tar")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "transfer.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        with tarfile.open(args.tar) as archive:
            archive.extractall(root)
        data = next(p.parent for p in root.rglob("train") if p.is_dir())
        schema = Path(tmp) / "schema.pbtxt"
        measure([IMGPIPE, "schema", "infer", data, "--output", schema, *SETS[:6]])
        out = Path(tmp) / "out"
        scratch = run(data, schema, out, ["--set", f"training.epochs={args.epochs}",
                                          "--set", "training.learning_rate=0.001",
                                          "--set", "training.weights='none'"])
        print(json.dumps(scratch, indent=1), flush=True)
        start = Path(scratch["model_dir"]) / "assets" / "backbone_weights.h5"
        half = max(1, args.epochs // 2)
        started = run(data, schema, out, [
            "--set", f"training.epochs={half}", "--set", "training.learning_rate=0.001",
            "--set", f"training.weights='{start}'", "--set", "training.fine_tune_layers=30",
            "--set", f"training.fine_tune_epochs={args.epochs - half}"])
        print(json.dumps(started, indent=1), flush=True)
        jpeg = next(data.rglob("*.jpg")).read_bytes()
        for result in (scratch, started):
            result["serving_bytes_ms_per_image"] = bytes_latency_ms(result["model_dir"], jpeg)
        results = {"side": SIDE, "epochs": args.epochs, "weights_none": scratch,
                   "weights_from_file": started}
    write_results(args.output, results)


if __name__ == "__main__":
    main()
