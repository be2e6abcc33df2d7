"""The client-mistake fuzzer's cost, beside the pipeline's evaluation time.

  .venv/bin/python bench/fuzz.py --cifar-root ROOT --cifar-stages TRAINING_JSON [--photos-tar TAR]

- CIFAR-10: `imgpipe fuzz ROOT --config configs/cifar10.toml` on the preset's
  model of a bench/training.py run (ROOT its output root), at two sample
  sizes (250 and 1,000 evaluation inputs per mistake): wall time, peak RSS,
  seconds per mistake row (the rows' own timings), against the Evaluator +
  EvaluationGate stage times of that run (from bench/training.py's JSON).
- Photos (224 px): hymenoptera's train/ folder through the pipeline
  (MobileNetV2, weights none, 1 epoch), the fuzzer in the gate at its default
  time budget ("auto": 0.25 at 224 px): its seconds against the Evaluator's
  and the gate's own, and the rows it had no time for (UNTESTED); again
  with generated copies (bench/photos.py) to --photos-larger photos; and
  `imgpipe fuzz` on each run's evaluation photos (no budget there): its wall
  time and peak RSS at the two split sizes.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from measure import measure  # noqa: E402

IMGPIPE = REPO / ".venv" / "bin" / "imgpipe"
STAGE = re.compile(r"\[done \] (\w+)\s+([\d.]+)s")
PHOTO_SETS = ["--set", "image.height=224", "--set", "image.width=224",
              "--set", "data.classes=['ants','bees']", "--set", "pipeline.name='fuzz-photos'",
              "--set", "training.model='mobilenet_v2'", "--set", "training.weights='none'",
              "--set", "training.epochs=1", "--set", "training.batch_size=32",
              "--set", "evaluation.f1_floor=0", "--set", "evaluation.accuracy_floor=0",
              "--set", "registry.promote=false"]


def fuzz(target: Path, config, sample: int, json_path: Path, extra=()) -> dict:
    result = measure([IMGPIPE, "fuzz", target, "--config", config, "--sample", sample,
                      "--json", json_path, *extra], ok=(0, 1))
    rows = json.loads(json_path.read_text())
    seconds = [row["seconds"] for row in rows]
    return {**result, "sample": sample, "images_per_row": rows[0]["images"], "rows": len(rows),
            "rows_seconds_total": round(sum(seconds), 2),
            "seconds_per_row_median": round(sorted(seconds)[len(seconds) // 2], 3),
            "slowest_rows": sorted(((row["mistake"], round(row["seconds"], 2)) for row in rows),
                                   key=lambda pair: -pair[1])[:4],
            "verdicts": {row["mistake"]: row["verdict"] for row in rows}}


def gate_fuzz_seconds(root: Path) -> float:
    """The fuzzer's time inside the preset run's EvaluationGate (its first report)."""
    reports = sorted((root / "pipelines" / "imgpipe-cifar10" / "EvaluationGate" / "report").iterdir(),
                     key=lambda p: int(p.name))
    report = json.loads((reports[0] / "evaluation_report.json").read_text())
    return report.get("fuzz_seconds") or sum(row["seconds"] for row in report["fuzz"] or [])


def cifar(root: Path, stages_json: Path, scratch: Path, data: Path = None) -> dict:
    """The preset's own model (the seed CNN, trained after it, is the run's latest).
    The run's gate fuzzed at the preset's sample: its evaluation time without the
    fuzzer is Evaluator + EvaluationGate minus the fuzzer's own seconds."""
    preset = json.loads(stages_json.read_text())["preset"]
    stages = preset["stages_s"]
    in_gate = gate_fuzz_seconds(root)
    evaluation = sum(stages.get(name, 0.0) for name in ("Evaluator", "EvaluationGate")) - in_gate
    where = ["--set", f"pipeline.output_root='{root}'"]
    if data is not None:   # the run's data.source, where its evaluation files are
        where += ["--set", f"data.source='{data.absolute()}'"]
    runs = [fuzz(Path(preset["model_dir"]), REPO / "configs" / "cifar10.toml", n,
                 scratch / f"cifar-{n}.json", where) for n in (250, 1000)]
    return {"evaluation_stages_s": {k: stages.get(k) for k in ("Evaluator", "EvaluationGate")},
            "fuzz_in_gate_s": round(in_gate, 2), "evaluation_without_fuzz_s": round(evaluation, 2),
            "fuzz_share_of_evaluation": round(in_gate / evaluation, 3), "runs": runs}


def gate_report(out: Path, pipeline: str) -> dict:
    """The newest evaluation report of a run's EvaluationGate."""
    reports = (out / "pipelines" / pipeline / "EvaluationGate" / "report").iterdir()
    return json.loads((max(reports, key=lambda p: int(p.name)) / "evaluation_report.json").read_text())


def photos_in_gate(data: Path, scratch: Path, name: str) -> tuple:
    """The pipeline on a photo folder, the fuzzer in its gate at the default
    time budget: its seconds against the Evaluator's and the gate's own."""
    schema, out = scratch / f"{name}-schema.pbtxt", scratch / f"{name}-out"
    measure([IMGPIPE, "schema", "infer", data, "--output", schema, *PHOTO_SETS[:6]])
    run = measure([IMGPIPE, "run", "--data", data, "--output-root", out, *PHOTO_SETS,
                   "--set", f"validation.schema_file='{schema}'"], keep_output=True, ok=(0, 1))
    stages = {name: float(s) for name, s in STAGE.findall(run.pop("out"))}
    report = gate_report(out, "fuzz-photos")
    fuzzed = report["fuzz_seconds"]
    evaluation = stages["Evaluator"] + stages["EvaluationGate"] - fuzzed
    inputs = sorted({row["images"] for row in report["fuzz"] if row["scores"]})
    untested = [row["mistake"] for row in report["fuzz"] if row["verdict"] == "UNTESTED"]
    return {"photos": len(photo_files_under(data)), "evaluation_inputs": report["parity"]["images"],
            "evaluation_stages_s": {k: stages[k] for k in ("Evaluator", "EvaluationGate")},
            "evaluation_without_fuzz_s": round(evaluation, 2), "fuzz_in_gate_s": fuzzed,
            "fuzz_share_of_evaluation": round(fuzzed / evaluation, 3),
            "budget": report["fuzz_budget"], "inputs_per_accepted_row": inputs,
            "untested": untested,
            "pipeline": run}, out, schema


def photo_files_under(data: Path) -> list:
    return [p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


def photos(tar: Path, scratch: Path, larger: int) -> dict:
    """The hymenoptera train/ folder (its evaluation split: ~44 photos), then the
    same with generated copies (bench/photos.py) to `larger` photos in all;
    and `imgpipe fuzz` on each run's model, outside the gate (no budget)."""
    from photos import copies
    data_root = scratch / "photos"
    with tarfile.open(tar) as archive:
        archive.extractall(data_root)
    root = next(p.parent for p in data_root.rglob("train") if p.is_dir())
    small, out, schema = photos_in_gate(root / "train", scratch, "small")
    print(json.dumps(small, indent=1), flush=True)
    sets = [*PHOTO_SETS, "--set", f"validation.schema_file='{schema}'"]
    alone = fuzz(out, "builtin:quickstart", 1000, scratch / "photos.json", sets)
    copies(root, larger)
    large, out, schema = photos_in_gate(root / "train", scratch, "large")
    sets = [*PHOTO_SETS, "--set", f"validation.schema_file='{schema}'"]
    alone_large = fuzz(out, "builtin:quickstart", 1000, scratch / "photos-large.json", sets)
    return {"split_small": small, "split_large": large,
            "imgpipe_fuzz_no_budget": {"split_small": alone, "split_large": alone_large}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar-root", type=Path, default=None)
    parser.add_argument("--cifar-stages", type=Path, default=REPO / "bench" / "results" / "training.json")
    parser.add_argument("--cifar-data", type=Path, default=None,
                        help="the CIFAR-10 run's data.source, when its config does not name it")
    parser.add_argument("--photos-tar", type=Path, default=None)
    parser.add_argument("--photos-larger", type=int, default=1001,
                        help="photos in all for the second photo run (generated copies)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "fuzz.json")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="keep the runs here (to re-run their gates), not in a temporary folder")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.scratch or tmp
        if args.cifar_root:
            results["cifar10"] = cifar(args.cifar_root, args.cifar_stages, Path(tmp), args.cifar_data)
            print(json.dumps(results["cifar10"], indent=1), flush=True)
        if args.photos_tar:
            results["photos_224"] = photos(args.photos_tar, Path(tmp), args.photos_larger)
            print(json.dumps(results["photos_224"], indent=1), flush=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
