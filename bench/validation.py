"""Validation benchmark: statistics + validation throughput and `imgpipe validate` latency.

  .venv/bin/python bench/validation.py --data runs/datasets/cifar10/train

  - The CIFAR-10 preset through the pipeline in a fresh output root:
    StatisticsGen + ValidationGate wall time on all examples -> examples/s.
  - `imgpipe validate` on 1,000 CIFAR-10 JPEGs (a class-folder tree) and on
    the same images as a uint8 .npz: wall time of the whole command (process
    start, imports, decoding, statistics, validation), median of 3 runs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imgpipe  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import IMGPIPE, run_cli, subset, write_results  # noqa: E402


def timed(args, runs=3) -> dict:
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([IMGPIPE, *args], capture_output=True, text=True, cwd=REPO)
        walls.append(time.perf_counter() - start)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"imgpipe {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return {"median_s": statistics.median(walls), "runs_s": walls}


def in_process(source: Path, runs: int = 3) -> dict:
    """The work of `imgpipe validate` without process start-up and imports."""
    import tensorflow_data_validation as tfdv

    from imgpipe.components.validation_gate import inprocess, schema_curation

    preset = tfdv.load_schema_text(str(REPO / "schemas" / "cifar10.pbtxt"))
    # The preset's schema is of the encoded layout; an .npz is checked as pixels.
    schema = schema_curation.for_layout(preset, encoded=source.is_dir(), height=32, width=32,
                                        channels=3)
    inprocess.statistics_of(inprocess.load_source(str(source), height=32, width=32,
                                                  channels=3).batches)  # warm-up: tracing
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        loaded = inprocess.load_source(str(source), height=32, width=32, channels=3)
        [stats] = inprocess.statistics_of(loaded.batches, schema)
        verdict = inprocess.validate(stats, schema, "TRAINING")
        walls.append(time.perf_counter() - start)
    return {"median_s": statistics.median(walls), "runs_s": walls, "passed": verdict.passed}


def pipeline_row(data: Path, work: Path) -> dict:
    """The CIFAR-10 preset through the pipeline: StatisticsGen + the gate's share."""
    run = run_cli(["run", "--config", "builtin:cifar10", "--data", str(data),
                   "--output-root", str(work / "out")])
    examples = sum(1 for _ in data.glob("*/*"))
    seconds = run["stages"]["StatisticsGen"] + run["stages"]["ValidationGate"]
    return {"examples": examples, "stages": run["stages"], "statistics_and_validation_s": seconds,
            "examples_per_s": examples / seconds, "peak_rss_mb": run["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "validation.json")
    parser.add_argument("--skip-pipeline", action="store_true",
                        help="only `imgpipe validate`; keep the pipeline row of --output")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgpipe-bench-validation-"))
    results = {}
    try:
        if args.skip_pipeline:
            results["pipeline"] = json.loads(args.output.read_text())["pipeline"]
        else:
            results["pipeline"] = pipeline_row(args.data, work)
        print(json.dumps(results["pipeline"]), flush=True)

        sample = work / "sample"
        subset(args.data, 1000, sample)
        subprocess.run([IMGPIPE, "to-npz", str(sample), "--output", str(work / "sample.npz"),
                        "--config", "builtin:cifar10"], check=True, capture_output=True, cwd=REPO)
        common = ["--config", "builtin:cifar10"]
        results["validate_1000"] = {
            "images_folder": timed(["validate", str(sample), *common]),
            "uint8_npz": timed(["validate", str(work / "sample.npz"), *common]),
            "startup_only": timed(["--help"]),
            "in_process_images_folder": in_process(sample),
            "in_process_uint8_npz": in_process(work / "sample.npz"),
        }
        print(json.dumps({k: round(v["median_s"], 2) for k, v in results["validate_1000"].items()}),
              flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
