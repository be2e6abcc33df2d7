"""Installed-package benchmark: imgpipe as a user's project gets it.

  .venv/bin/python bench/package.py            (make bench-package)

  - wheel: `pip wheel --no-deps` of this checkout, wall time and size;
  - install: the wheel into a fresh virtualenv (--no-deps; the locked
    dependencies are borrowed from .venv by a path line, as the
    installed-package test does: a full dependency install is network-bound);
  - start-up: `imgpipe --help` from the fresh virtualenv against the plain
    `python -c "import tfx, tensorflow"` of the same interpreter (the
    libraries imgpipe cannot start without), median of 5;
  - quickstart: `imgpipe init` + `imgpipe run --data shapes` in an empty
    folder (the quickstart preset on the built-in generator's images, at two
    sizes), wall time and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from measure import measure  # noqa: E402


def median_wall(command, cwd, runs=5) -> float:
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
    return round(statistics.median(walls), 2)


def fresh_install(root: Path) -> tuple:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(root / "dist"), str(REPO)], check=True)
    wheel_s = time.perf_counter() - start
    [wheel] = (root / "dist").glob("imgpipe-*.whl")
    venv = root / "venv"
    start = time.perf_counter()
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    [packages] = venv.glob("lib/python3.*/site-packages")
    (packages / "locked-dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True)
    install_s = time.perf_counter() - start
    return venv / "bin", {"wheel_build_s": round(wheel_s, 2), "wheel_kb": wheel.stat().st_size // 1024,
                          "install_s": round(install_s, 2)}


def quickstart_run(bin_dir: Path, root: Path, per_class: int) -> dict:
    project = root / f"project-{per_class}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPIPE_", "MLFLOW_"))}
    init = measure([bin_dir / "imgpipe", "init", project.name], cwd=root, env=env)
    # The built-in generator's images at this size, as the project's own data folder.
    subprocess.run([bin_dir / "python", "-c",
                    "import sys; from imgpipe import quickstart_data as q; "
                    "q.generate(sys.argv[1], images_per_class=int(sys.argv[2]))",
                    str(project / "shapes"), str(per_class)], check=True, env=env)
    run = measure([bin_dir / "imgpipe", "run", "--data", "shapes"], cwd=project, env=env)
    return {"images": per_class * 4, "init_s": init["wall_s"], "run": run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", default="250,1000",
                        help="quickstart images per class, two sizes")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "package.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imgpipe-package-"))
    try:
        bin_dir, install = fresh_install(root)
        results = {"cpus": os.cpu_count(), **install,
                   "startup_help_s": median_wall([bin_dir / "imgpipe", "--help"], root),
                   "startup_plain_import_s": median_wall(
                       [bin_dir / "python", "-c", "import tfx, tensorflow"], root),
                   "quickstart": [quickstart_run(bin_dir, root, int(n))
                                  for n in args.per_class.split(",")]}
        results["startup_ratio"] = round(results["startup_help_s"] / results["startup_plain_import_s"], 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_results(args.output, results)


if __name__ == "__main__":
    main()
