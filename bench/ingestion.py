"""Ingestion benchmark: imgpipe's ImageExampleGen against plain Pillow decoding.

  .venv/bin/python bench/ingestion.py --data runs/datasets/cifar10/train \
      --sizes 10000,50000 --output bench/results/ingestion.json

For each size N (the first N/K files of each of the K class folders):
  - Pillow: read + decode + convert to RGB + to NumPy, one process, one core;
  - imgpipe: `imgpipe ingest` in a fresh process (real TFX component on the
    Beam DirectRunner, writing gzipped tf.Examples), its ImageExampleGen wall
    time, CPU time and peak resident memory.
Also times each stage of the quickstart `imgpipe run` (what `make run` does).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import imgpipe  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parents[1]
IMGPIPE = str(Path(sys.executable).parent / "imgpipe")
STAGE_LINE = re.compile(r"^\[done \] (\S+)\s+([\d.]+)s")


def subset(data: Path, size: int, target: Path) -> int:
    """A class-folder tree of symlinks to the first size/K files of each class."""
    classes = sorted(p for p in data.iterdir() if p.is_dir())
    per_class = size // len(classes)
    count = 0
    for folder in classes:
        (target / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:per_class]:
            (target / folder.name / path.name).symlink_to(path.resolve())
            count += 1
    return count


def pillow_rate(tree: Path) -> dict:
    files = sorted(tree.glob("*/*"))
    for path in files:  # both sides read from a warm page cache
        path.read_bytes()
    start, cpu = time.perf_counter(), time.process_time()
    for path in files:
        with open(path, "rb") as handle:
            data = handle.read()
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"images": len(files), "wall_s": wall, "cpu_s": cpu,
            "images_per_s": len(files) / wall, "images_per_cpu_s": len(files) / cpu}


def breakdown(tree: Path, limit: int = 5000) -> dict:
    """Per-image cost of each ingestion step in isolation (microseconds)."""
    import zlib

    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.io.tfrecordio import _TFRecordUtil

    from imgpipe.components.image_example_gen import encoding
    from imgpipe.contract import ImageSpec, image_files, image_ops

    files = [str(p) for p in sorted(tree.glob("*/*"))[:limit]]
    n = len(files)
    steps = {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        steps[name] = (time.perf_counter() - start) / n * 1e6
        return result

    def read():
        out = []
        for path in files:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                out.append(f.read())
        return out

    data = timed("read file (Beam FileSystems)", read)
    timed("probe header (Pillow)", lambda: [image_files.probe_image(d) for d in data])
    spec = ImageSpec(32, 32, 3, exif_orientation="apply")
    decoder = image_ops.make_batch_decoder(spec)
    items = [(path, d, image_files.probe_image(d)) for path, d in zip(files, data)]
    image_ops.decode_items(decoder, items[:256], spec)
    decoded = timed("decode + convert + resize + properties (TF, batches of 256)", lambda: sum(
        (image_ops.decode_items(decoder, items[i:i + 256], spec)[0] for i in range(0, n, 256)), []))
    records = timed("build tf.Examples, encoded layout (tfx-bsl encoder)", lambda: sum(
        (encoding.encode_files(decoded[i:i + 256], [0] * len(decoded[i:i + 256]),
                               files[i:i + 256], spec) for i in range(0, n, 256)), []))

    def frame():
        buffer = io.BytesIO()
        for record in records:
            _TFRecordUtil.write_record(buffer, record)
        return buffer.getvalue()

    framed = timed("TFRecord framing + CRCs", frame)
    for level in (1, 6):
        timed(f"gzip level {level}",
              lambda level=level: zlib.compressobj(level, zlib.DEFLATED, 31).compress(framed))
    steps["example size (bytes)"] = sum(len(r) for r in records) / n
    return steps


def run_cli(args, env=None, ok=(0,)) -> dict:
    """Runs imgpipe in a child process; wall, CPU, peak RSS and stage times."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([IMGPIPE, *args], capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        raise SystemExit(f"imgpipe {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    stages = {}
    for line in proc.stdout.splitlines():
        match = STAGE_LINE.match(line)
        if match:
            stages[match.group(1)] = float(match.group(2))
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_rss_mb": after.ru_maxrss / 1024, "stages": stages}


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="class-folder tree (CIFAR-10 train)")
    parser.add_argument("--sizes", default="10000,50000",
                        help="comma-separated dataset sizes; empty for none")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "ingestion.json")
    parser.add_argument("--skip-quickstart", action="store_true")
    parser.add_argument("--skip-breakdown", action="store_true")
    args = parser.parse_args()

    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}, "ingestion": [], "quickstart": None}
    work = Path(tempfile.mkdtemp(prefix="imgpipe-bench-"))
    try:
        for size in (int(s) for s in args.sizes.split(",") if s):
            tree = work / f"data-{size}"
            count = subset(args.data, size, tree)
            pillow = pillow_rate(tree)
            # Each size in a fresh process and output root: peak RSS is its own.
            run = run_cli(["ingest", str(tree), "--config", "builtin:cifar10",
                           "--output", str(work / f"out-{size}"), "--set", "pipeline.enable_cache=false"])
            stage = run["stages"]["ImageExampleGen"]
            row = {"images": count, "pillow": pillow, "imgpipe": run,
                   "imgpipe_images_per_s": count / stage,
                   "ratio_to_pillow": (count / stage) / pillow["images_per_s"]}
            results["ingestion"].append(row)
            print(json.dumps({"images": count, "pillow_per_s": round(pillow["images_per_s"]),
                              "imgpipe_stage_s": stage,
                              "imgpipe_per_s": round(row["imgpipe_images_per_s"]),
                              "ratio": round(row["ratio_to_pillow"], 2),
                              "peak_rss_mb": round(run["peak_rss_mb"])}), flush=True)
        if not args.skip_breakdown:
            tree = work / "data-breakdown"
            subset(args.data, 5000, tree)
            results["breakdown_us_per_image"] = breakdown(tree)
            print(json.dumps({"breakdown_us_per_image": {
                k: round(v, 1) for k, v in results["breakdown_us_per_image"].items()}}), flush=True)
        if not args.skip_quickstart:
            results["quickstart"] = run_cli(["run", "--output-root", str(work / "quickstart")])
            print(json.dumps({"quickstart_stages": results["quickstart"]["stages"],
                              "wall_s": round(results["quickstart"]["wall_s"], 1)}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
