"""The client-mistake fuzzer's cost, beside the pipeline's evaluation time.

  .venv/bin/python bench/fuzz.py --cifar-root ROOT --cifar-stages TRAINING_JSON [--photos-tar TAR]

- CIFAR-10: `imgpipe fuzz ROOT --config configs/cifar10.toml` on the preset's
  model of a bench/training.py run (ROOT its output root), at two sample
  sizes (250 and 1,000 evaluation inputs per mistake): wall time, peak RSS,
  seconds per mistake row (the rows' own timings), against the Evaluator +
  EvaluationGate stage times of that run (from bench/training.py's JSON).
- Photos (224 px): the hymenoptera set through the pipeline (MobileNetV2,
  weights none, 1 epoch, the fuzzer off in the gate: the evaluation time
  without it), then `imgpipe fuzz` on its 153 evaluation photos.
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


def photos(tar: Path, scratch: Path) -> dict:
    data_root = scratch / "photos"
    with tarfile.open(tar) as archive:
        archive.extractall(data_root)
    data = next(p.parent for p in data_root.rglob("train") if p.is_dir())
    schema = scratch / "schema.pbtxt"
    measure([IMGPIPE, "schema", "infer", data, "--output", schema, *PHOTO_SETS[:6]])
    out = scratch / "out"
    run = measure([IMGPIPE, "run", "--data", data, "--output-root", out, *PHOTO_SETS,
                   "--set", f"validation.schema_file='{schema}'", "--set", "fuzz.enabled=false"],
                  keep_output=True)
    stages = {name: float(s) for name, s in STAGE.findall(run.pop("out"))}
    sets = [*PHOTO_SETS, "--set", f"validation.schema_file='{schema}'"]
    result = fuzz(out, "builtin:quickstart", 1000, scratch / "photos.json", sets)
    evaluation = sum(stages.get(k, 0.0) for k in ("Evaluator", "EvaluationGate"))
    return {"evaluation_stages_s": {k: stages.get(k) for k in ("Evaluator", "EvaluationGate")},
            "evaluation_without_fuzz_s": evaluation, "pipeline_wall_s": run["wall_s"],
            "fuzz": result, "fuzz_share_of_evaluation": round(result["rows_seconds_total"] / evaluation, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar-root", type=Path, default=None)
    parser.add_argument("--cifar-stages", type=Path, default=REPO / "bench" / "results" / "training.json")
    parser.add_argument("--cifar-data", type=Path, default=None,
                        help="the CIFAR-10 run's data.source, when its config does not name it")
    parser.add_argument("--photos-tar", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "fuzz.json")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.cifar_root:
            results["cifar10"] = cifar(args.cifar_root, args.cifar_stages, Path(tmp), args.cifar_data)
            print(json.dumps(results["cifar10"], indent=1), flush=True)
        if args.photos_tar:
            results["photos_224"] = photos(args.photos_tar, Path(tmp))
            print(json.dumps(results["photos_224"], indent=1), flush=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
