"""Photos at 224x224: ingestion, `schema infer` and `validate` at three dataset sizes.

  make bench-photos      (needs ../shared/datasets/hymenoptera.tar)

Sizes: the hymenoptera set as it comes (`train/` + `val/`, 397 photos), then
the same with copies generated from its `train/` photos (mirrored, centre-
cropped to 80%, re-encoded at JPEG quality 70-95) up to 1,000 and 4,397.
For each size, each command in a fresh measuring process (bench/measure.py):

  - `imgpipe ingest` (the pipeline's ImageExampleGen on Beam's DirectRunner,
    one worker, pinned to core 0): the stage's own time, images/s, peak RSS,
    bytes per example against the source files' bytes;
  - the baseline, in this process pinned to core 0: Pillow's decode, RGB
    conversion and bilinear resize to 224x224 of the same files;
  - `imgpipe schema infer` and `imgpipe validate` (against that schema):
    wall time (start-up included), peak RSS;
  - the whole pipeline (`imgpipe run`, 3 epochs, floors off, that schema):
    each stage's time and the run's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from measure import measure  # noqa: E402

IMGPIPE = REPO / ".venv" / "bin" / "imgpipe"
SIDE = 224
SETS = ("--set", f"image.height={SIDE}", "--set", f"image.width={SIDE}",
        "--set", "data.classes=['ants','bees']")


def copies(root: Path, total: int) -> None:
    """Adds generated copies of train/ photos until the set holds `total` photos."""
    originals = sorted(p for p in (root / "train").glob("*/*.jpg"))
    have = sum(1 for _ in root.glob("*/*/*.jpg"))
    rng = np.random.default_rng(0)
    for index in range(total - have):
        source = originals[index % len(originals)]
        with Image.open(source) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            if index % 2:
                image = ImageOps.mirror(image)
            if index % 3 == 0:
                w, h = image.size
                image = image.crop((w // 10, h // 10, w - w // 10, h - h // 10))
            target = source.parent / f"copy{have + index:05d}.jpg"
            image.save(target, "JPEG", quality=int(rng.integers(70, 96)))


def photo_files(root: Path) -> list:
    return sorted(p for p in root.glob("*/*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


ONE_CORE = ["taskset", "-c", "0"]   # both sides of the ratio on one core


def pillow_baseline(files: list) -> dict:
    """Pillow decode + RGB + bilinear resize to SIDE x SIDE, on core 0."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    try:
        for path in files[:50]:                      # page cache and Pillow warmed
            Path(path).read_bytes()
        start = time.perf_counter()
        for path in files:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR))
        wall = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, cores)
    return {"images": len(files), "wall_s": round(wall, 2), "images_per_s": round(len(files) / wall, 1)}


def ingest(root: Path, out: Path, count: int) -> dict:
    result = measure([*ONE_CORE, IMGPIPE, "ingest", root, "--output", out, *SETS,
                      "--set", "pipeline.name='photos'", "--set", "pipeline.enable_cache=false"],
                     keep_output=True)
    stage = float(re.search(r"\[done \] ImageExampleGen\s+([\d.]+)s", result.pop("out")).group(1))
    examples = sum(p.stat().st_size for p in
                   (out / "pipelines" / "photos" / "ImageExampleGen" / "examples").rglob("*.gz"))
    return {**result, "stage_s": stage, "images_per_s": round(count / stage, 1),
            "example_bytes_per_image": round(examples / count)}


def pipeline_run(root: Path, schema: Path, out: Path) -> dict:
    result = measure([IMGPIPE, "run", "--data", root, "--output-root", out, *SETS,
                      "--set", "training.epochs=3", "--set", f"validation.schema_file='{schema}'",
                      "--set", "evaluation.f1_floor=0", "--set", "evaluation.accuracy_floor=0",
                      "--set", "pipeline.name='photos'"], ok=(0, 1), keep_output=True)
    stages = re.findall(r"\[done \] (\w+)\s+([\d.]+)s", result.pop("out"))
    return {**result, "stages_s": {name: float(seconds) for name, seconds in stages}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tar", type=Path,
                        default=REPO.parent / "shared" / "datasets" / "hymenoptera.tar")
    parser.add_argument("--sizes", default="1000,4397", help="sizes beyond the 397 originals")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "photos.json")
    args = parser.parse_args()
    results = {"side": SIDE, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        with tarfile.open(args.tar) as archive:
            archive.extractall(root)
        for total in [0] + [int(s) for s in args.sizes.split(",") if s]:
            if total:
                copies(root, total)
            files = photo_files(root)
            source_bytes = sum(p.stat().st_size for p in files)
            row = {"photos": len(files), "source_bytes_per_image": round(source_bytes / len(files)),
                   "pillow": pillow_baseline(files)}
            out = Path(tmp) / f"out-{len(files)}"
            row["ingest"] = ingest(root, out, len(files))
            row["ingest"]["ratio_to_pillow"] = round(
                row["ingest"]["images_per_s"] / row["pillow"]["images_per_s"], 2)
            schema = Path(tmp) / f"schema-{len(files)}.pbtxt"
            row["schema_infer"] = measure([IMGPIPE, "schema", "infer", root, "--output", schema, *SETS])
            row["validate"] = measure([IMGPIPE, "validate", root, "--schema", schema, *SETS],
                                      ok=(0, 1))
            row["pipeline"] = pipeline_run(root, schema, Path(tmp) / f"run-{len(files)}")
            shutil.rmtree(Path(tmp) / f"run-{len(files)}")
            shutil.rmtree(out)
            print(row, flush=True)
            results["sizes"].append(row)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
