"""Wall time and peak RSS of one command, each in its own measuring process.

RUSAGE_CHILDREN's ru_maxrss is the largest child a process ever waited for,
so several commands measured from one process would hide a smaller peak
behind an earlier larger one; a fresh wrapper per command reports that
command's own peak.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

_WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'rc': proc.returncode, 'peak_kb': peak, 'out': proc.stdout[-20000:],\n"
    "                  'err': proc.stderr[-4000:]}))\n"
)


def measure(command, cwd=None, env=None, ok=(0,), keep_output=False) -> dict:
    start = time.perf_counter()
    wrapper = subprocess.run([sys.executable, "-c", _WRAPPER, *map(str, command)], cwd=cwd, env=env,
                             capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(wrapper.stdout.strip().splitlines()[-1])
    if result["rc"] not in ok:
        raise SystemExit(f"{' '.join(map(str, command))} exited {result['rc']}:\n"
                         f"{result['out']}\n{result['err']}")
    measured = {"wall_s": round(wall, 2), "peak_rss_mb": round(result["peak_kb"] / 1024)}
    return {**measured, "out": result["out"]} if keep_output else measured
