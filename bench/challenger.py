"""The production loop's costs: a challenger beside the champion, and ground truth.

  make run && .venv/bin/python bench/challenger.py

- Serving: the quickstart champion behind `imgpipe serve` (its own process)
  alone, with a shadow challenger scoring 10% of the requests (the default
  share) and every request, and split 50/50; 8 clients send single-PNG
  requests over loopback HTTP: requests/s, p50/p99 latency, the server's
  peak RSS (VmHWM). The challenger is a second blessed version of the same
  model (`imgpipe run --set training.seed=2 --set registry.promote=false`),
  pushed first when missing.
- Ground truth: `POST /v1/feedback` for every answer of the alone run, in
  batches of 100 (labels/s); `imgpipe feedback import` of 1,000 and 10,000
  labels (prediction rows written to a fresh log first): wall time and peak
  RSS of the command, beside `python -c "import imgpipe.serving.feedback"`'s
  own start-up (the baseline: what the command costs before any label).
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402
from measure import measure  # noqa: E402

from serving import free_port, load, start_server  # noqa: E402

IMGPIPE = str(REPO / ".venv" / "bin" / "imgpipe")
MODEL = "shapes-cnn"


def ensure_challenger() -> None:
    from imgpipe.pipeline.config import load_config
    from imgpipe.registry import store
    config = load_config("builtin:quickstart")
    store.migrate(config.registry_url)     # what registry.auto_migrate does at the next push
    engine = store.require_schema(config.registry_url)
    if any(row.status != store.CHAMPION and row.blessed for row in store.list_versions(engine, MODEL)):
        return
    subprocess.run([IMGPIPE, "run", "--set", "training.seed=2", "--set", "registry.promote=false"],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def serve_row(name: str, extra: list, bodies: list, scratch: str, requests: int = 960) -> dict:
    port = free_port()
    server = start_server(port, extra, scratch)
    try:
        url = f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict"
        load(url, bodies, 8, 64)                           # warm-up
        result = load(url, bodies, 8, requests)
        return {"row": name, **result, "server_peak_rss_mb": peak_rss_mb(server.pid)}
    finally:
        server.terminate()
        server.wait(30)


def feedback_throughput(bodies: list, scratch: str, count: int = 960) -> dict:
    """Answers with their ids, then their labels in batches of 100."""
    import httpx
    port = free_port()
    server = start_server(port, [], scratch)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=60) as client:
            ids = []
            for i in range(count):
                answer = client.post(f"{base}/v1/models/{MODEL}:predict", json=bodies[i % len(bodies)])
                ids.append(answer.json()["predictions"][0]["prediction_id"])
            started = time.perf_counter()
            for start in range(0, count, 100):
                sent = client.post(f"{base}/v1/feedback", json={"feedback": [
                    {"prediction_id": pid, "label": "circle"} for pid in ids[start:start + 100]]})
                assert sent.status_code == 200, sent.text
            seconds = time.perf_counter() - started
        return {"labels": count, "batch": 100, "seconds": round(seconds, 2),
                "labels_per_s": round(count / seconds, 1)}
    finally:
        server.terminate()
        server.wait(30)


def import_row(count: int, scratch: Path) -> dict:
    from sqlalchemy import insert

    from imgpipe.pipeline.config import load_config
    from imgpipe.registry import store
    from imgpipe.registry.models import PredictionLog
    champion = store.champion(store.require_schema(load_config("builtin:quickstart").registry_url), MODEL)
    log_url = f"sqlite:///{scratch / f'import-{count}.db'}"
    store.migrate(log_url)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with store.engine_for(log_url).begin() as connection:
        connection.execute(insert(PredictionLog), [
            {"created_at": dt.datetime.now(dt.timezone.utc), "model_name": MODEL,
             "model_uid": champion.model_uid, "model_version": champion.version,
             "input_hash": "0" * 64, "predicted_class": "circle", "class_id": 0, "confidence": 0.9,
             "latency_ms": 1.0, "source": "bench", "prediction_id": pid} for pid in ids])
    labels = scratch / f"labels-{count}.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prediction_id", "label"])
        writer.writerows((pid, "square") for pid in ids)
    result = measure([IMGPIPE, "feedback", "import", str(labels), "--set", f"serving.log_url='{log_url}'"])
    return {"labels": count, **result}


def main() -> None:
    import numpy as np

    from imgpipe.quickstart_data import draw_shape
    ensure_challenger()
    rng = np.random.default_rng(0)
    bodies = []
    for i in range(64):
        image = draw_shape(["circle", "cross", "square", "triangle"][i % 4], rng)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        bodies.append({"instances": [{"b64": base64.b64encode(buffer.getvalue()).decode()}]})
    with tempfile.TemporaryDirectory(prefix="imgpipe-bench-loop-") as scratch:
        def challenger(mode: str, share: float) -> list:
            return ["--set", "serving.challenger='newest'", "--set", f"serving.challenger_mode='{mode}'",
                    "--set", f"serving.challenger_share={share}"]
        rows = [serve_row("champion alone", [], bodies, scratch),
                serve_row("shadow challenger, 10% of requests", challenger("shadow", 0.1), bodies, scratch),
                serve_row("shadow challenger, every request", challenger("shadow", 1.0), bodies, scratch),
                serve_row("split 50/50", challenger("split", 0.5), bodies, scratch)]
        feedback = feedback_throughput(bodies, scratch)
        baseline = measure([str(REPO / ".venv" / "bin" / "python"), "-c", "import imgpipe.serving.feedback"])
        imports = [import_row(n, Path(scratch)) for n in (1_000, 10_000)]
    results = {"serving": rows, "feedback_http": feedback, "import_baseline": baseline,
               "feedback_import": imports}
    print(json.dumps(results, indent=2))
    write_results(REPO / "bench" / "results" / "challenger.json", results)


if __name__ == "__main__":
    main()
