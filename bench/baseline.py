"""`imgpipe validate SOURCE --baseline B`: a data baseline against a statistics baseline.

  .venv/bin/python bench/baseline.py            (make bench-package runs it too)

For two sizes N (images per side, the quickstart generator's shapes, PNG and
JPEG): `imgpipe validate new --baseline old` where `old` is a class-folder
tree of N images, and again where it is that tree's statistics file (what a
pipeline run keeps); wall time and peak RSS of the process. The plain-library
baseline in the same run: Pillow decoding both trees to arrays in one process
(the part no validator can skip), as a ratio.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parents[1]
IMGPIPE = str(REPO / ".venv" / "bin" / "imgpipe")
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from measure import measure  # noqa: E402


def shapes(root: Path, per_class: int, seed: int) -> Path:
    from imgpipe import quickstart_data
    return quickstart_data.generate(root, images_per_class=per_class, seed=seed)


def pillow_decode(*trees: Path) -> float:
    start = time.perf_counter()
    for tree in trees:
        for path in sorted(tree.glob("*/*")):
            with Image.open(io.BytesIO(path.read_bytes())) as image:
                np.asarray(image.convert("RGB"))
    return time.perf_counter() - start


def validate(source: Path, baseline: Path) -> dict:
    return measure([IMGPIPE, "validate", source, "--baseline", baseline,
                    "--config", "builtin:quickstart"])


def statistics_file(tree: Path, out: Path) -> Path:
    """The tree's statistics, as the pipeline keeps them (binary DatasetFeatureStatisticsList)."""
    import tensorflow_data_validation as tfdv

    from imgpipe.components.validation_gate import inprocess
    from imgpipe.pipeline.config import load_config
    schema = tfdv.load_schema_text(load_config("builtin:quickstart").schema_location)
    loaded = inprocess.load_source(str(tree), height=32, width=32, channels=3)
    [stats] = inprocess.statistics_of(loaded.batches, schema)
    out.write_bytes(stats.SerializeToString())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", default="250,1000", help="images per class, two sizes")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "baseline.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imgpipe-baseline-"))
    results = {"rows": []}
    try:
        for per_class in (int(n) for n in args.per_class.split(",")):
            old = shapes(root / f"old-{per_class}", per_class, seed=1)
            new = shapes(root / f"new-{per_class}", per_class, seed=2)
            stats = statistics_file(old, root / f"old-{per_class}.pb")
            pillow_s = pillow_decode(old, new)
            folder, from_stats = validate(new, old), validate(new, stats)
            results["rows"].append({
                "images_per_side": per_class * 4, "pillow_decode_both_s": round(pillow_s, 2),
                "baseline_folder": folder, "baseline_statistics": from_stats,
                "ratio_folder_to_pillow": round(folder["wall_s"] / pillow_s, 1)})
            print(results["rows"][-1], flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
