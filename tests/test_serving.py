"""Serving without a pipeline: input checks, micro-batching, the prediction log,
monitor's checks, and the HTTP service on a small real SavedModel from the registry."""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import registry_helpers as helpers
from imgpipe.registry import mlflow_sync, publish, store
from imgpipe.serving import model as served
from imgpipe.serving import monitor, predlog
from imgpipe.serving.batching import MicroBatcher


def png(shade: int, size=(8, 8), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade,) * 3).save(buffer, fmt)
    return buffer.getvalue()


# -- input checks ---------------------------------------------------------------

def test_pixels_must_be_uint8_of_the_models_shape():
    good = np.zeros((2, 8, 8, 3), np.uint8)
    assert served.check_pixels(good, (8, 8, 3)).shape == (2, 8, 8, 3)
    assert served.check_pixels(good[0], (8, 8, 3)).shape == (1, 8, 8, 3)
    with pytest.raises(served.InputRejected, match=r"got float32 pixels in \[1, 1\]; expected uint8") as scaled:
        served.check_pixels(np.ones((1, 8, 8, 3), np.float32), (8, 8, 3))
    assert scaled.value.status == 422
    with pytest.raises(served.InputRejected, match=r"got shape \[1, 4, 4, 3\]; expected \[n, 8, 8, 3\]"):
        served.check_pixels(np.zeros((1, 4, 4, 3), np.uint8), (8, 8, 3))
    with pytest.raises(served.InputRejected, match=r"pixel values in \[300, 300\]"):
        served.check_pixels(np.full((1, 8, 8, 3), 300), (8, 8, 3))


@pytest.mark.parametrize("data, status, message", [
    (b"", 400, "empty file"),
    (b"GIF89a....", 400, "not a readable JPEG or PNG"),
    (png(9, fmt="GIF"), 415, "format GIF is not supported"),
    (png(9, size=(100, 20)), 413, "larger than the 64-pixel side limit"),
    (png(9, size=(300, 300)), 413, "above the limit"),
])
def test_image_bytes_are_checked_before_decoding(data, status, message):
    with pytest.raises(served.InputRejected, match=message) as rejected:
        served.check_image_bytes(data, served.Limits(max_image_side=64), "upload")
    assert rejected.value.status == status
    served.check_image_bytes(png(9), served.Limits(max_image_side=64))
    with pytest.raises(served.InputRejected, match="expected PNG"):
        served.check_image_bytes(png(9, fmt="JPEG"), served.Limits(64, ("PNG",)))


# -- micro-batching ---------------------------------------------------------------

def test_concurrent_requests_share_model_calls_and_keep_their_results():
    calls = []

    def run(items):
        calls.append(len(items))
        time.sleep(0.01)
        return [item * 10 for item in items]

    async def main(max_batch):
        batcher = MicroBatcher(run, max_batch=max_batch, max_wait_ms=20)
        batcher.start()
        results = await asyncio.gather(*[batcher.submit([i, i + 100]) for i in range(20)])
        await batcher.stop()
        return results

    results = asyncio.run(main(8))
    assert results == [[i * 10, (i + 100) * 10] for i in range(20)]
    assert max(calls) == 8 and sum(calls) == 40 and len(calls) <= 8
    calls.clear()
    assert asyncio.run(main(1)) == results and calls == [2] * 20   # no batching


# -- prediction log ---------------------------------------------------------------

def test_prediction_log_writes_off_the_request_path_and_samples_by_content(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    logger = predlog.PredictionLogger(url, str(tmp_path / "samples"), sample_rate=0.5)
    images = [png(i) for i in range(40)]
    for data in images:
        logger.log(predlog.LogRecord("tiny", "u1", 1, served.input_hash(data), "dark", 0, 0.9,
                                     1.5, "http", data=data))
    logger.close()
    rows = predlog.read(url, "tiny", dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    assert len(rows) == 40 and logger.written == 40
    kept = [r.sample_path for r in rows if r.sample_path]
    assert 5 < len(kept) < 35
    assert kept == [r.sample_path for r in rows if predlog.sampled(r.input_hash, 0.5)]
    assert all(open(p, "rb").read() in images for p in kept)
    assert predlog.read(url, "tiny", dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=1)) == []
    # No log yet (nothing predicted here): no rows, and no database created by reading.
    absent = tmp_path / "absent.db"
    assert predlog.read(f"sqlite:///{absent}", "tiny", dt.datetime.now(dt.timezone.utc)) == []
    assert not absent.exists()


# -- monitor checks ---------------------------------------------------------------

BASELINE = {"mean_confidence": 0.9, "per_class_confidence": {"dark": 0.9, "bright": 0.9},
            "predicted_distribution": {"dark": 0.5, "bright": 0.5}}


def test_monitor_checks():
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
    assert monitor.parse_since("30m", now) == now - dt.timedelta(minutes=30)
    assert monitor.parse_since("7d", now) == now - dt.timedelta(days=7)
    assert monitor.parse_since("2026-11-01T00:00", now).tzinfo == dt.timezone.utc
    with pytest.raises(ValueError, match="expected 30m"):
        monitor.parse_since("yesterday", now)

    classes = ["dark", "bright"] * 20
    quiet = monitor.confidence_check([0.9] * 40, classes, BASELINE, 0.7, 20)
    assert quiet.status == monitor.OK and "(evaluation: 0.900)" in quiet.detail
    low = monitor.confidence_check([0.55] * 40, classes, BASELINE, 0.7, 20)
    assert low.status == monitor.ALERT and "below the floor 0.7" in low.detail
    assert monitor.confidence_check([0.5] * 5, classes[:5], BASELINE, 0.7, 20).status == monitor.SKIPPED

    assert monitor.class_distribution_check(classes, ["dark", "bright"], BASELINE, 0.15, 20).status == monitor.OK
    skewed = monitor.class_distribution_check(["dark"] * 40, ["dark", "bright"], BASELINE, 0.15, 20)
    assert skewed.status == monitor.ALERT and skewed.value == pytest.approx(0.5)
    assert "largest for dark: 100.0% served vs 50.0%" in skewed.detail
    assert monitor.class_distribution_check(classes, ["dark", "bright"], None, 0.15, 20).status == monitor.SKIPPED


# -- the HTTP service -------------------------------------------------------------

def _tiny_app(tmp_path):
    from imgpipe.serving import app as serving_app

    url, tracking = f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.migrate(url)
    mlflow_sync.ensure_store(tracking)
    model_dir = str(helpers.write_tiny_saved_model(tmp_path / "model"))
    publish.publish(url, tracking, str(tmp_path / "serving"), model_dir, helpers.new_version("t1"),
                    helpers.run_record("t1", str(tmp_path / "mla")))
    settings = serving_app.ServiceSettings(model_name="tiny", max_batch=8, max_wait_ms=0,
                                           max_body_bytes=20_000, max_instances=16,
                                           reload_seconds=0.2, limits=served.Limits(64))
    holder = serving_app.ModelHolder(lambda: served.resolve(url, "tiny"), served.load)
    logger = predlog.PredictionLogger(f"sqlite:///{tmp_path / 'log.db'}", str(tmp_path / "s"), 1.0)
    return serving_app.create_app(settings, holder, logger), {
        "url": url, "tracking": tracking, "tmp": tmp_path, "holder": holder, "logger": logger}


@pytest.fixture
def service(tmp_path):
    """The tiny model as champion of `tiny`, served by the real app (in-process client)."""
    from fastapi.testclient import TestClient
    app, info = _tiny_app(tmp_path)
    with TestClient(app) as client:
        yield {"client": client, **info}


@pytest.fixture
def loopback(tmp_path):
    """The same app behind a real uvicorn server on 127.0.0.1 (sockets, HTTP/1.1)."""
    import httpx
    import uvicorn
    app, info = _tiny_app(tmp_path)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield {"client": client, **info}
    server.should_exit = True
    thread.join(30)


def predict(client, payload, name="tiny"):
    return client.post(f"/v1/models/{name}:predict", json=payload)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_predicts_from_bytes_arrays_and_uploads(service):
    client = service["client"]
    answer = predict(client, {"instances": [b64(png(10)), b64(png(250)),
                                            np.full((8, 8, 3), 240, np.uint8).tolist()]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p["class"] for p in body["predictions"]] == ["dark", "bright", "bright"]
    assert body["model_uid"] == "t1" and body["model_version"] == "1"
    assert body["predictions"][0]["top_k"][0]["class"] == "dark"
    upload = client.post("/v1/models/tiny/images",
                         files=[("file", ("a.png", png(5), "image/png")),
                                ("file", ("b.png", png(200), "image/png"))])
    assert upload.status_code == 200 and [p["class"] for p in upload.json()["predictions"]] == ["dark", "bright"]
    assert client.get("/healthz").json()["model_uid"] == "t1"
    status = client.get("/v1/models/tiny").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metrics = client.get("/metrics").text
    assert 'imgpipe_requests_total{endpoint="predict",status="200"} 1.0' in metrics
    assert "imgpipe_batch_size_bucket" in metrics and "imgpipe_mean_confidence" in metrics


@pytest.mark.parametrize("payload, status, message", [
    ({"instances": [np.full((8, 8, 3), 0.5).tolist()]}, 422, "got float64 pixels in [0.5, 0.5]; expected uint8"),
    ({"instances": [np.zeros((4, 4, 3), int).tolist()]}, 422, "expected [n, 8, 8, 3]"),
    ({"instances": [b64(b"not an image")]}, 400, "not a readable JPEG or PNG"),
    ({"instances": [b64(png(3, fmt="GIF"))]}, 415, "format GIF is not supported"),
    ({"instances": [b64(png(3, size=(100, 10)))]}, 413, "64-pixel side limit"),
    ({"instances": [{"b64": "%%%"}]}, 400, "not valid base64"),
    ({"instances": []}, 400, "a non-empty list"),
    ({"instances": [b64(png(1))] * 17}, 413, "the limit is 16 per request"),
    ({"inputs": {}}, 400, "expected {\"instances\""),
])
def test_each_bad_request_gets_its_4xx_and_the_server_keeps_serving(service, payload, status, message):
    client = service["client"]
    refused = predict(client, payload)
    assert refused.status_code == status, refused.text
    assert message in refused.json()["error"]
    assert predict(client, {"instances": [b64(png(250))]}).status_code == 200


def test_other_refusals(service):
    client = service["client"]
    # A header that passes the checks but a body TensorFlow cannot decode.
    truncated = png(200, size=(40, 40))[:80]
    broken = predict(client, {"instances": [b64(truncated)]})
    assert broken.status_code == 400 and "could not be decoded" in broken.json()["error"]
    assert client.post("/v1/models/tiny:predict", content=b"{not json").status_code == 400
    too_big = client.post("/v1/models/tiny:predict", content=b" " * 30_000)
    assert too_big.status_code == 413 and "the limit is 20,000" in too_big.json()["error"]
    other = predict(client, {"instances": [b64(png(1))]}, name="other")
    assert other.status_code == 404 and "serves 'tiny'" in other.json()["error"]
    no_file = client.post("/v1/models/tiny/images", files=[("image", ("a.png", png(5), "image/png"))])
    assert no_file.status_code == 400 and "`file` fields" in no_file.json()["error"]
    assert predict(client, {"instances": [b64(png(250))]}).status_code == 200


def test_concurrent_requests_are_answered_correctly_and_batched(loopback):
    service = loopback
    client = service["client"]
    shades = [int(s) for s in np.random.default_rng(0).integers(0, 256, 64)]

    def one(shade):
        response = predict(client, {"instances": [b64(png(shade))]})
        return response.status_code, response.json()["predictions"][0]["class"]

    with ThreadPoolExecutor(16) as pool:   # a bounded loopback client
        answers = list(pool.map(one, shades))
    assert all(code == 200 for code, _ in answers)
    assert [cls for _, cls in answers] == ["bright" if s / 255 > 0.5 else "dark" for s in shades]
    metrics = service["client"].get("/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines()
                       if line.startswith("imgpipe_batch_size_count")))
    assert count < 64   # some model calls carried several requests


def test_a_new_champion_is_picked_up_without_dropping_requests(loopback, tmp_path):
    service = loopback
    client = service["client"]
    failures, stop = [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            response = predict(client, {"instances": [b64(png(128))]})
            if response.status_code != 200:
                failures.append(response.text)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    brighter = str(helpers.write_tiny_saved_model(tmp_path / "model2", bias=0.3))
    publish.publish(service["url"], service["tracking"], str(tmp_path / "serving"), brighter,
                    helpers.new_version("t2"), helpers.run_record("t2", str(tmp_path / "mla")),
                    expected_champion="t1")
    deadline = time.monotonic() + 10
    while client.get("/healthz").json()["model_uid"] != "t2" and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    asker.join()
    assert client.get("/healthz").json()["model_uid"] == "t2"
    assert failures == []
    answer = predict(client, {"instances": [b64(png(128))]}).json()
    assert answer["model_version"] == "2" and answer["predictions"][0]["class"] == "bright"
    assert "imgpipe_model_reloads_total 1.0" in client.get("/metrics").text
