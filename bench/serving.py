"""Prediction service benchmark: throughput and latency over loopback HTTP.

  make bench-serving      (make run, then this script)

Serves the quickstart champion (from `make run`'s registry) with
`imgpipe serve` in a separate process, once with micro-batching (the
config's max_batch/max_wait_ms) and once without (max_batch = 1). A client
process sends single-image requests ({"instances": [{"b64": PNG}]}) from 1,
8 and 32 concurrent connections and measures requests per second and the
p50/p99 latency. The baseline is the same SavedModel called in this process
through serving_bytes, one image per call and 32 per call. One more row:
4 normal clients alone, then beside 4 clients that keep sending maximal
bodies (max_instances nested-pixel arrays, all within the limits), to show
what heavy clients cost the others; the heavy senders run in a process of
their own, as other programs would, and the row is measured several times.
"""
from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imgpipe  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from ingestion import write_results  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, extra: list, log_dir: str) -> subprocess.Popen:
    command = [str(REPO / ".venv" / "bin" / "imgpipe"), "serve", "--port", str(port),
               "--set", f"serving.log_url='sqlite:///{log_dir}/predictions.db'",
               "--set", f"serving.samples_root='{log_dir}/samples'", *extra]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
        if server.poll() is not None:
            raise SystemExit(f"imgpipe serve exited: {server.stderr.read().decode()[-2000:]}")
    raise SystemExit("imgpipe serve did not become healthy in 120 s")


def load(url: str, bodies: list, clients: int, requests: int) -> dict:
    import httpx
    latencies = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        with httpx.Client(timeout=60) as client:
            for i in range(count):
                started = time.perf_counter()
                response = client.post(url, json=bodies[i % len(bodies)])
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                with lock:
                    latencies.append(elapsed)

    per_client = max(requests // clients, 1)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [per_client] * clients))
    wall = time.perf_counter() - started
    latencies.sort()
    return {"clients": clients, "requests": len(latencies),
            "requests_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)}


def maximal_body(image_shape, max_instances: int) -> bytes:
    """The largest request within the limits: max_instances uint8 arrays, as JSON."""
    import numpy as np
    pixels = np.full(tuple(image_shape), 255, np.uint8).tolist()
    return json.dumps({"instances": [pixels] * max_instances}).encode()


def send_heavy_bodies(url: str, body: bytes, senders: int, stop, answers) -> None:
    """`senders` connections posting `body` until `stop` is set; their statuses
    are put on `answers`. Run in a process of its own, like a real heavy client:
    its work (sending, reading 256 answers) does not hold the normal clients' GIL."""
    import httpx
    statuses = []

    def send() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                statuses.append(client.post(url, content=body,
                                            headers={"Content-Type": "application/json"}
                                            ).status_code)

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers.put(statuses)


def beside_heavy_clients(url: str, bodies: list, heavy_body: bytes, requests: int) -> dict:
    """4 normal clients alone, then while 4 others keep posting `heavy_body`."""
    import multiprocessing
    alone = load(url, bodies, 4, requests)
    spawn = multiprocessing.get_context("spawn")
    stop, answers = spawn.Event(), spawn.Queue()
    heavy = spawn.Process(target=send_heavy_bodies, args=(url, heavy_body, 4, stop, answers))
    heavy.start()
    try:
        time.sleep(2)        # the heavy senders are started and sending
        beside = load(url, bodies, 4, requests)
    finally:
        stop.set()
        statuses = answers.get(timeout=300)
        heavy.join(60)
    return {"heavy_body_bytes": len(heavy_body), "heavy_requests": len(statuses),
            "heavy_statuses": sorted(set(statuses)), "alone": alone, "beside_heavy": beside,
            "ratio": {"requests_per_s": round(beside["requests_per_s"] / alone["requests_per_s"], 2),
                      "p50": round(beside["p50_ms"] / alone["p50_ms"], 2),
                      "p99": round(beside["p99_ms"] / alone["p99_ms"], 2)}}


def in_process(model_dir: str, images: list) -> dict:
    import tensorflow as tf

    from imgpipe.contract import SIGNATURES
    model = tf.saved_model.load(model_dir)
    signature = model.signatures[SIGNATURES.bytes]

    def call(data):
        return signature(**{SIGNATURES.bytes_input: data})

    results = {}
    for batch in (1, 32):
        data = tf.constant((images * 32)[:batch])
        call(data)
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < 5:
            call(data)
            count += 1
        results[f"batch_{batch}_images_per_s"] = round(count * batch / (time.perf_counter() - started), 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=960, help="per concurrency level")
    parser.add_argument("--heavy-repeats", type=int, default=5,
                        help="times the heavy-clients row is measured")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "serving.json")
    args = parser.parse_args()

    from imgpipe.contract import ImageSpec
    from imgpipe.pipeline.config import load_config
    from imgpipe.serving import model as served
    config = load_config(REPO / "configs" / "quickstart.toml",
                         {"pipeline.output_root": str(REPO / "runs")})
    row = served.resolve(config.registry_url, config.registry.model_name)
    images = [open(p, "rb").read() for p in
              sorted(glob.glob(str(REPO / "runs" / "datasets" / "quickstart" / "*" / "*.png")))[:64]]
    bodies = [{"instances": [{"b64": base64.b64encode(data).decode()}]} for data in images]
    heavy_body = maximal_body(ImageSpec.from_record(row.training_config).shape,
                              config.serving.max_instances)

    results = {"model_uid": row.model_uid, "cpus": os.cpu_count(), "request": "1 PNG (32x32) per request",
               "in_process": in_process(row.artifact_path, images), "http": {}}
    modes = {"micro-batching": [],
             "no batching": ["--set", "serving.max_batch=1"]}
    with tempfile.TemporaryDirectory() as log_dir:
        for mode, extra in modes.items():
            port = free_port()
            server = start_server(port, extra, log_dir)
            try:
                url = f"http://127.0.0.1:{port}/v1/models/{row.model_name}:predict"
                load(url, bodies, 4, 64)  # warm-up
                results["http"][mode] = [load(url, bodies, clients, args.requests)
                                         for clients in (1, 8, 32)]
                if mode == "micro-batching":
                    # Repeated: a p99 over a few seconds on a shared 2-core machine is noisy.
                    results["http"]["4 normal clients beside 4 sending maximal bodies"] = [
                        beside_heavy_clients(url, bodies, heavy_body, args.requests)
                        for _ in range(args.heavy_repeats)]
            finally:
                server.terminate()
                server.wait(30)
    write_results(args.output, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
