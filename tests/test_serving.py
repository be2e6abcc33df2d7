"""Serving without a pipeline: input checks, micro-batching, the prediction log,
monitor's checks, and the HTTP service on a small real SavedModel from the registry."""
from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import re
import select
import socket
import sqlite3
import stat
import struct
import threading
import time
import types
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import registry_helpers as helpers
from imgpipe.registry import mlflow_sync, publish, store
from imgpipe.serving import model as served
from imgpipe.serving import monitor, parsing, predlog
from imgpipe.serving.batching import MicroBatcher, QueueFull, Unavailable


def png(shade: int, size=(8, 8), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade,) * 3).save(buffer, fmt)
    return buffer.getvalue()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 * side**2 bytes."""
    buffer = io.BytesIO()
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def eventually(condition, seconds: float = 30) -> bool:
    """Whether `condition()` holds within `seconds` (a guard against hanging, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- input checks ---------------------------------------------------------------

def test_pixels_must_be_uint8_of_the_models_shape():
    good = np.zeros((2, 8, 8, 3), np.uint8)
    assert served.check_pixels(good, (8, 8, 3)).shape == (2, 8, 8, 3)
    assert served.check_pixels(good[0], (8, 8, 3)).shape == (1, 8, 8, 3)
    with pytest.raises(served.InputRejected,
                       match=r"got float32 pixels in \[1, 1\]; expected uint8") as scaled:
        served.check_pixels(np.ones((1, 8, 8, 3), np.float32), (8, 8, 3))
    assert scaled.value.status == 422
    with pytest.raises(served.InputRejected, match=r"got shape \[1, 4, 4, 3\]; expected \[n, 8, 8, 3\]"):
        served.check_pixels(np.zeros((1, 4, 4, 3), np.uint8), (8, 8, 3))
    with pytest.raises(served.InputRejected, match=r"pixel values in \[300, 300\]"):
        served.check_pixels(np.full((1, 8, 8, 3), 300), (8, 8, 3))


def test_pixels_that_are_only_0_and_1_are_refused_but_a_black_image_is_not():
    scaled_then_cast = np.round(np.random.default_rng(0).random((1, 8, 8, 3))).astype(np.uint8)
    with pytest.raises(served.InputRejected, match=r"every pixel value is 0 or 1; expected uint8"):
        served.check_pixels(scaled_then_cast, (8, 8, 3))
    assert served.check_pixels(np.zeros((1, 8, 8, 3), np.uint8), (8, 8, 3)).shape == (1, 8, 8, 3)
    dark = scaled_then_cast.copy()
    dark[0, 0, 0, 0] = 2   # one value above 1: a (very dark) real image
    assert served.check_pixels(dark, (8, 8, 3)).shape == (1, 8, 8, 3)


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


def png_chunk(kind: bytes, fields: bytes) -> bytes:
    return struct.pack(">I", len(fields)) + kind + fields + struct.pack(">I", zlib.crc32(kind + fields))


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature, IHDR and an empty IDAT: the size Pillow reads, no pixels."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + png_chunk(b"IDAT", b""))


def test_a_decompression_bomb_is_413_and_errors_name_no_python_objects():
    # Above Pillow's own threshold (2 x MAX_IMAGE_PIXELS), where Pillow refuses first.
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 100
    with pytest.raises(served.InputRejected, match="decompression bomb") as bomb:
        served.check_image_bytes(png_header(side, side), served.Limits(max_image_side=64))
    assert bomb.value.status == 413
    with pytest.raises(served.InputRejected) as garbage:
        served.check_image_bytes(b"GIF89a....", served.Limits(max_image_side=64), "upload")
    assert str(garbage.value).startswith("upload: not a readable JPEG or PNG")
    assert "object at 0x" not in str(garbage.value), str(garbage.value)


# -- request parsing, without the web framework ---------------------------------

LIMITS = served.Limits(max_image_side=64)


def instances_body(*instances) -> bytes:
    return json.dumps({"instances": list(instances)}).encode()


def refusal(parse, *args):
    """The InputRejected that parse(*args) raises, as (status, message)."""
    with pytest.raises(served.InputRejected) as rejected:
        parse(*args)
    return rejected.value.status, str(rejected.value)


def test_a_json_body_parses_into_encoded_and_pixel_items():
    image, pixels = png(40), np.full((8, 8, 3), 7, np.uint8)
    items = parsing.parse_instances(instances_body(b64(image), pixels.tolist()), 2, LIMITS,
                                    (8, 8, 3))
    assert [item.data for item in items] == [image, None]
    assert items[0].payload == image
    assert items[1].pixels.dtype == np.uint8 and np.array_equal(items[1].payload, pixels)


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "body is not JSON; expected {\"instances\": [...]}"),
    (b"[1, 2]", 400, "expected {\"instances\": [...]}: a non-empty list"),
    (json.dumps({"inputs": [b64(png(1))]}).encode(), 400, "expected {\"instances\": [...]}"),
    (instances_body(), 400, "a non-empty list"),
    (instances_body(*[b64(png(1))] * 3), 413, "3 instances; the limit is 2 per request"),
    (instances_body(b64(png(1)), {"b64": 5}), 400, "instances[1]: expected {\"b64\": \"...\"}"),
    (instances_body({"b64": "%%%"}), 400, "instances[0]: b64 is not valid base64"),
    (instances_body(b64(b"not an image")), 400, "instances[0]: not a readable JPEG or PNG"),
    (instances_body(b64(png(1, fmt="GIF"))), 415, "instances[0]: format GIF is not supported"),
    (instances_body(b64(png(1, size=(100, 8)))), 413, "64-pixel side limit"),
    (instances_body([[1, 2], [3]]), 422, "instances[0]: a ragged array; expected uint8"),
    (instances_body(np.full((8, 8, 3), 0.5).tolist()), 422, "instances[0]: got float64 pixels"),
    (instances_body(np.zeros((4, 4, 3), int).tolist()), 422,
     "instances[0]: got shape [4, 4, 3]; an instance is exactly one image, uint8 pixels [8, 8, 3]"),
    (instances_body(np.zeros((3, 8, 8, 3), int).tolist()), 422,
     "instances[0]: got shape [3, 8, 8, 3]; an instance is exactly one image"),
    (instances_body(np.zeros((8, 8, 3), int).tolist(), np.zeros((1, 8, 8, 3), int).tolist()), 422,
     "instances[1]: got shape [1, 8, 8, 3]; an instance is exactly one image"),
    (instances_body(np.zeros((8, 8, 3), bool).tolist()), 422,
     "instances[0]: got boolean values; expected uint8 pixels"),
], ids=["not-json", "not-an-object", "inputs", "empty", "too-many", "b64-not-a-string",
        "bad-base64", "not-an-image", "gif", "too-wide", "ragged", "float", "shape",
        "a-batch-in-one-instance", "one-image-as-a-batch", "booleans"])
def test_each_bad_json_body_is_refused_with_its_status(body, status, message):
    got_status, got_message = refusal(parsing.parse_instances, body, 2, LIMITS, (8, 8, 3))
    assert got_status == status and message in got_message, got_message


def test_json_nested_deeper_than_a_request_is_refused_by_its_depth():
    deep = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert refusal(parsing.parse_instances, deep, 2, LIMITS, (8, 8, 3)) == (
        400, "JSON nested 5001 levels deep; the limit is 8 ({\"instances\": [[h][w][c] arrays]} "
             "needs 5)")
    brackets_in_strings = json.dumps({"instances": [{"b64": "x"}], "note": "[" * 50}).encode()
    assert parsing.json_depth(brackets_in_strings) == 3


def test_a_request_may_ask_to_decode_only_so_many_pixels():
    limits = served.Limits(max_image_side=64, max_pixels_per_request=2 * 8 * 8)
    pixels = np.zeros((8, 8, 3), int).tolist()
    assert len(parsing.parse_instances(instances_body(pixels, b64(png(1))), 4, limits, (8, 8, 3))) == 2
    status, message = refusal(parsing.parse_instances,
                              instances_body(pixels, b64(png(1)), pixels), 4, limits, (8, 8, 3))
    assert status == 413 and message.startswith("instances[2]: the request holds more than 128 "
                                                 "pixels, the limit per request"), message
    big = refusal(parsing.parse_instances, instances_body(b64(png(1, size=(12, 12)))), 4, limits,
                  (8, 8, 3))
    assert big[0] == 413 and "more than 128 pixels" in big[1]
    assert refusal(parsing.parse_uploads, [("a.png", png(1, size=(12, 12)))], 10_000, limits)[0] == 413


def test_the_body_limit_holds_for_declared_and_streamed_bodies():
    parsing.check_declared_length(None, 20_000)           # chunked: checked as it arrives
    parsing.check_declared_length("20000", 20_000)
    assert refusal(parsing.check_declared_length, "20001", 20_000) == (
        413, "request body is 20,001 bytes; the limit is 20,000")
    body = parsing.BodyBuffer(10)
    for chunk in (b"12345", b"6789", b"0"):
        body.add(chunk)
    assert body.data() == b"1234567890"
    assert refusal(body.add, b"!") == (413, "request body is more than 10 bytes; the limit is 10")
    assert body.data() == b"1234567890"                    # the refused chunk is not kept


def test_other_requests_are_refused_by_name():
    parsing.check_model_name("tiny", "tiny")
    assert refusal(parsing.check_model_name, "other", "tiny") == (
        404, "no model 'other' here; this server serves 'tiny'")


def test_an_upload_must_declare_its_length_within_the_limit():
    for missing in (None, ""):
        status, message = refusal(parsing.check_upload_length, missing, 100)
        assert status == 411 and "Content-Length is required" in message
    assert refusal(parsing.check_upload_length, "101", 100)[0] == 413
    parsing.check_upload_length("100", 100)


class MultiPartRefused(Exception):
    """Stands in for the HTTPException Starlette raises for a body its parser refuses."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def test_the_form_parsers_failures_become_refusals():
    many = parsing.form_refusal(MultiPartRefused("Too many files. Maximum number of files is 16."), 16)
    assert (many.status, str(many)) == (413, "more than 16 `file` fields; the limit is 16 images "
                                             "per request")
    garbled = parsing.form_refusal(MultiPartRefused("Missing boundary in multipart."), 16)
    assert garbled.status == 400
    assert str(garbled).endswith("with `file` fields (Missing boundary in multipart.)")
    unexplained = parsing.form_refusal(KeyError(), 16)    # no detail: named by its type
    assert unexplained.status == 400 and str(unexplained).endswith("(KeyError)")


def test_uploaded_files_parse_into_encoded_items_or_the_first_refusal():
    images = [png(5), png(200, fmt="JPEG")]
    items = parsing.parse_uploads([("a.png", images[0]), (None, images[1])], 10_000, LIMITS)
    assert [item.payload for item in items] == images
    assert refusal(parsing.parse_uploads, [], 10_000, LIMITS) == (
        400, "expected one or more `file` fields (multipart/form-data)")
    big = noise_png(40)
    assert refusal(parsing.parse_uploads, [("a.png", png(5)), ("big.png", big)], len(big) - 1,
                   LIMITS) == (413, "big.png: too large")
    status, message = refusal(parsing.parse_uploads, [(None, b"x"), ("b.gif", b"y")], 100, LIMITS)
    assert status == 400 and message.startswith("file: not a readable JPEG or PNG")


def test_the_first_refusal_of_a_batch_is_named_by_its_index():
    results = ["a prediction", served.InputRejected(400, "undecodable"),
               served.InputRejected(415, "later")]
    first = parsing.first_refusal(results)
    assert (first.status, str(first)) == (400, "instances[1]: undecodable")
    assert parsing.first_refusal(results[:1]) is None


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


def test_the_batcher_runs_on_the_loop_it_is_started_on():
    batcher = MicroBatcher(lambda items: [item * 10 for item in items], max_batch=8,
                           max_wait_ms=0)   # built outside any event loop, as create_app does

    async def serve(value):
        batcher.start()
        try:
            return await asyncio.wait_for(batcher.submit([value]), 30)
        finally:
            await batcher.stop()

    assert asyncio.run(serve(1)) == [10]
    assert asyncio.run(serve(2)) == [20]   # a second loop, as after a restart


def test_a_full_queue_is_refused_and_stop_fails_what_still_waits():
    gate = threading.Event()

    def run(items):
        gate.wait(30)
        return items

    async def main():
        batcher = MicroBatcher(run, max_batch=4, max_wait_ms=0, max_queue=2)
        batcher.start()
        waiting = [asyncio.ensure_future(batcher.submit([i])) for i in range(2)]
        await asyncio.sleep(0)   # both admitted: one in the model call, one queued
        try:
            with pytest.raises(QueueFull, match=r"2 requests are already waiting .*limit is 2"):
                await asyncio.wait_for(batcher.submit([9]), 30)
            await batcher.stop()
        finally:
            gate.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 30)
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.submit([10])
        return outcomes

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [Unavailable, Unavailable]
    assert all("shutting down; the request was not run" in str(o) for o in outcomes)


def test_a_bulk_request_fills_the_room_small_ones_leave_and_never_holds_them_up():
    calls, first_call = [], threading.Event()

    def run(items):
        calls.append(list(items))
        first_call.wait(30)     # the first call is held until everything is queued
        return [item * 10 for item in items]

    async def main():
        batcher = MicroBatcher(run, max_batch=4, max_wait_ms=0)
        batcher.start()
        started = asyncio.ensure_future(batcher.submit([0]))
        await asyncio.sleep(0.05)                               # in the model call now
        bulk = asyncio.ensure_future(batcher.submit(list(range(100, 110))))
        await asyncio.sleep(0)
        smalls = [asyncio.ensure_future(batcher.submit([i, i + 1])) for i in (1, 3)]
        await asyncio.sleep(0)
        first_call.set()
        results = await asyncio.wait_for(asyncio.gather(started, bulk, *smalls), 30)
        await batcher.stop()
        return results

    started, bulk, small_a, small_b = asyncio.run(main())
    assert bulk == [item * 10 for item in range(100, 110)]
    assert (started, small_a, small_b) == ([0], [10, 20], [30, 40])
    # The small requests, queued after the bulk one, go first; the bulk one
    # takes the room left and then whole calls.
    assert calls == [[0], [1, 2, 3, 4], [100, 101, 102, 103], [104, 105, 106, 107], [108, 109]]


def test_a_failed_call_fails_the_whole_bulk_request_and_the_rest_is_not_run():
    calls = []

    def run(items):
        calls.append(list(items))
        if 3 in items:
            raise RuntimeError("the model failed")
        return items

    async def main():
        batcher = MicroBatcher(run, max_batch=3, max_wait_ms=0)
        batcher.start()
        outcome = await asyncio.gather(batcher.submit(list(range(9))), return_exceptions=True)
        after = await batcher.submit([7])
        await batcher.stop()
        return outcome[0], after

    failure, after = asyncio.run(main())
    assert isinstance(failure, RuntimeError) and after == [7]
    assert calls == [[0, 1, 2], [3, 4, 5], [7]]


# -- prediction log ---------------------------------------------------------------

def record(data: bytes) -> predlog.LogRecord:
    return predlog.LogRecord("tiny", "u1", 1, served.input_hash(data), "dark", 0, 0.9, 1.5,
                             "http", data=data)


@pytest.fixture
def log_writes_fail():
    """Makes INSERTs into prediction_log fail, as a database that is away: the next
    `plan["left"]` of them (float("inf"): all)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    plan = {"left": 0}

    def refuse(connection, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO prediction_log") and plan["left"] > 0:
            plan["left"] -= 1
            raise sqlite3.OperationalError("database is locked")

    event.listen(Engine, "before_cursor_execute", refuse)
    yield plan
    event.remove(Engine, "before_cursor_execute", refuse)


def test_prediction_log_writes_off_the_request_path_and_samples_by_content(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    logger = predlog.PredictionLogger(url, str(tmp_path / "samples"), sample_rate=0.5)
    images = [png(i) for i in range(40)]
    for data in images:
        logger.log(record(data))
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


def test_every_array_request_logs_its_range_saturation_and_channel_means(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    logger = predlog.PredictionLogger(url, str(tmp_path / "samples"), sample_rate=0.0)
    pixels = np.zeros((4, 4, 3), np.uint8)
    pixels[..., 0], pixels[0, 0, 2] = 200, 255        # red, one saturated blue value
    model = types.SimpleNamespace(name="tiny", uid="u1", version=1)
    answer = served.Prediction("dark", 0, 0.9, [("dark", 0.9)], [0.9, 0.1])
    logger.log(predlog.LogRecord.of(model, answer, pixels, 1.5, "http"))
    logger.log(predlog.LogRecord.of(model, answer, png(1), 1.5, "http"))
    logger.close()
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    array_row, bytes_row = predlog.read(url, "tiny", since)
    assert (array_row.pixel_min, array_row.pixel_max) == (0, 255)
    assert array_row.channel_means == pytest.approx([200.0, 0.0, 255 / 16])
    assert array_row.saturation == pytest.approx(32 / 48)   # green: 16 zeros; blue: 15 zeros, one 255
    assert array_row.sample_path is None                            # not sampled, still measured
    assert bytes_row.channel_means is None and bytes_row.pixel_mean is None


def test_prediction_log_retries_failed_writes_and_outlives_a_bad_batch(tmp_path, monkeypatch,
                                                                      log_writes_fail):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    keep_sample, broken = predlog._write_sample, []

    def disk_bug_once(path, kept):
        if not broken:
            broken.append(path)
            raise RuntimeError("an unexpected bug")
        keep_sample(path, kept)

    monkeypatch.setattr(predlog, "_write_sample", disk_bug_once)
    logger = predlog.PredictionLogger(url, str(tmp_path / "samples"), sample_rate=1.0)
    logger.log(record(png(0)))
    assert eventually(lambda: logger.dropped == 1)   # that batch is lost, the writer is not
    log_writes_fail["left"] = 2                      # the database is away, then back
    for shade in range(1, 11):
        logger.log(record(png(shade)))
    logger.close()
    rows = predlog.read(url, "tiny", dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    assert log_writes_fail["left"] == 0
    assert len(rows) == 10 and logger.written == 10 and logger.dropped == 1


def test_prediction_log_drops_and_counts_what_its_full_queue_cannot_hold(tmp_path, monkeypatch):
    gate, writing = threading.Event(), threading.Event()
    keep_sample = predlog._write_sample

    def slow_disk(path, kept):
        writing.set()
        gate.wait(30)
        keep_sample(path, kept)

    monkeypatch.setattr(predlog, "_write_sample", slow_disk)
    url = f"sqlite:///{tmp_path / 'log.db'}"
    logger = predlog.PredictionLogger(url, str(tmp_path / "samples"), sample_rate=1.0,
                                      max_queue=2)
    logger.log(record(png(0)))
    assert writing.wait(30)                  # the writer holds the first record
    for shade in range(1, 5):                # two fit in the queue, two do not
        logger.log(record(png(shade)))
    assert logger.dropped == 2 and logger.queued == 2
    gate.set()
    logger.close()
    rows = predlog.read(url, "tiny", dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1))
    assert len(rows) == 3 and logger.written == 3 and logger.dropped == 2


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

    names = ["dark", "bright"]
    assert monitor.class_distribution_check(classes, names, BASELINE, 0.15, 20).status == monitor.OK
    skewed = monitor.class_distribution_check(["dark"] * 40, names, BASELINE, 0.15, 20)
    assert skewed.status == monitor.ALERT and skewed.value == pytest.approx(0.5)
    assert "largest for dark: 100.0% served vs 50.0%" in skewed.detail
    assert monitor.class_distribution_check(classes, names, None, 0.15, 20).status == monitor.SKIPPED


def test_the_client_mistake_check_names_the_fuzzers_nearest_mistake():
    def row(mistake, verdict, means, confidence, sends="pixels"):
        return {"mistake": mistake, "description": f"{mistake} (how)", "verdict": verdict,
                "sends": sends, "fingerprint": {"channel_means": means, "mean_confidence": [confidence]}}
    report = [row("clean pixels", "REFERENCE", [130, 115, 90], 0.9),
              row("float [0, 1] (float32)", "REFUSED", [0, 0, 0], 0.3),
              row("BGR", "SILENT HARM", [90, 115, 130], 0.8),
              row("JPEG quality 75", "HARMLESS", [129, 115, 91], 0.9, "bytes"),
              row("brightness -20%", "FLAGGED", [104, 92, 72], 0.85)]
    swapped = monitor.client_mistake_check([92, 116, 128], [0.81] * 30, report, 20)
    assert swapped.status == monitor.ALERT and swapped.extra["mistake"] == "BGR"
    assert 'inputs look like "BGR" (BGR (how)) — channel order looks swapped (R and B exchanged)' \
        in swapped.detail
    clean = monitor.client_mistake_check([128, 114, 92], [0.89] * 30, report, 20)
    assert clean.status == monitor.OK and "inputs look like clean traffic" in clean.detail
    darker = monitor.client_mistake_check([106, 93, 73], [0.84] * 30, report, 20)
    assert darker.status == monitor.ALERT and darker.extra["mistake"] == "brightness -20%"
    assert monitor.client_mistake_check([1, 2, 3], [0.9] * 30, None, 20).status == monitor.SKIPPED
    assert monitor.client_mistake_check(None, [0.9] * 30, report, 20).status == monitor.SKIPPED


def test_the_skew_check_says_when_the_samples_are_on_another_host(tmp_path):
    # monitor's input-skew check is the validation gate's code and lives there now.
    from imgpipe.components.validation_gate import serving_skew
    from imgpipe.contract import ImageSpec
    # Samples logged on another host (or deleted): SKIPPED, saying so.
    elsewhere = serving_skew.skew_check([str(tmp_path / f"{i}.png") for i in range(3)] + [None],
                                        ImageSpec(8, 8, 3), None, None, 0.1, 20)
    assert elsewhere.status == monitor.SKIPPED
    assert "3 of the 3 logged sample files are missing on this host" in elsewhere.detail


# -- the HTTP service -------------------------------------------------------------

def _tiny_app(tmp_path, **settings_overrides):
    from imgpipe.serving import app as serving_app

    url, tracking = f"sqlite:///{tmp_path / 'registry.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.migrate(url)
    mlflow_sync.ensure_store(tracking)
    model_dir = str(helpers.write_tiny_saved_model(tmp_path / "model"))
    publish.publish(url, tracking, str(tmp_path / "serving"), model_dir, helpers.new_version("t1"),
                    helpers.run_record("t1", str(tmp_path / "mla")))
    settings = serving_app.ServiceSettings(model_name="tiny", max_batch=8, max_wait_ms=0,
                                           max_body_bytes=20_000, max_instances=16,
                                           reload_seconds=0.2, limits=served.Limits(64),
                                           **settings_overrides)
    holder = serving_app.ModelHolder(lambda: served.resolve(url, "tiny"), served.load)
    logger = predlog.PredictionLogger(f"sqlite:///{tmp_path / 'log.db'}", str(tmp_path / "s"), 1.0)
    app = serving_app.create_app(settings, holder, logger)
    return app, {
        "app": app, "url": url, "tracking": tracking, "tmp": tmp_path, "holder": holder, "logger": logger}


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
    app, info = _tiny_app(tmp_path, read_timeout_seconds=1.0)
    with on_loopback(app) as (client, port):
        yield {"client": client, "port": port, **info}


@contextlib.contextmanager
def on_loopback(app):
    """`app` behind a real uvicorn server on 127.0.0.1: an HTTP client and the port."""
    import httpx
    import uvicorn

    from imgpipe.serving import http_server
    server = uvicorn.Server(http_server.server_config(app, "127.0.0.1", 0, read_timeout=1.0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client, port
    finally:
        server.should_exit = True
        thread.join(30)


def predict(client, payload, name="tiny"):
    return client.post(f"/v1/models/{name}:predict", json=payload)


def send_images(client, endpoint, images):
    """The same images through the JSON endpoint (b64) or the multipart upload."""
    if endpoint == "predict":
        return predict(client, {"instances": [b64(data) for data in images]})
    return client.post("/v1/models/tiny/images",
                       files=[("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)])


def post_chunked(service, path, chunks, size=1000):
    """POST `chunks` x `size` bytes with no Content-Length (chunked transfer), on the
    app's own event loop through httpx's ASGI transport, which hands the server one
    chunk per read: the answer and how many chunks the server read."""
    import httpx
    read = []

    async def body():
        for _ in range(chunks):
            read.append(size)
            yield b" " * size

    async def post():
        transport = httpx.ASGITransport(app=service["app"])
        async with httpx.AsyncClient(transport=transport, base_url="http://tiny") as client:
            return await client.post(path, content=body())

    return service["client"].portal.call(post), len(read)


def gate_model(monkeypatch, model):
    """Holds `model`'s calls until the returned event is set."""
    gate, run = threading.Event(), model.predict_each

    def held(inputs, top_k):
        gate.wait(30)
        return run(inputs, top_k)

    monkeypatch.setattr(model, "predict_each", held)
    return gate


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
    assert upload.status_code == 200
    assert [p["class"] for p in upload.json()["predictions"]] == ["dark", "bright"]
    assert client.get("/healthz").json()["model_uid"] == "t1"
    status = client.get("/v1/models/tiny").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metrics = client.get("/metrics").text
    assert 'imgpipe_requests_total{endpoint="predict",status="200"} 1.0' in metrics
    assert "imgpipe_batch_size_bucket" in metrics and "imgpipe_mean_confidence" in metrics
    for name in ("imgpipe_prediction_log_written_total", "imgpipe_prediction_log_dropped_total 0.0",
                 "imgpipe_prediction_log_queue_depth"):
        assert name in metrics


def test_every_answer_carries_a_prediction_id_that_feedback_labels_once(service):
    from sqlalchemy import select

    from imgpipe.registry.models import Feedback, PredictionLog
    client = service["client"]
    answer = predict(client, {"instances": [b64(png(10)), b64(png(250))]}).json()
    ids = [p["prediction_id"] for p in answer["predictions"]]
    assert len(set(ids)) == 2 and answer["model_version"] == "1"
    # Sent straight after the answer: before the log's next write, which it waits for.
    sent = client.post("/v1/feedback", json={"feedback": [{"prediction_id": ids[0], "label": "dark"},
                                                          {"prediction_id": ids[1], "label": "dark"}]})
    assert sent.status_code == 200 and sent.json() == {"recorded": 2}
    again = client.post("/v1/feedback", json={"prediction_id": ids[1], "label": "bright"})
    assert again.status_code == 422
    assert again.json()["refused"] == [f"feedback: prediction {ids[1]} already has a label"]
    wrong = client.post("/v1/feedback", json={"prediction_id": "nope", "label": "purple"})
    assert wrong.status_code == 422 and "unknown prediction_id 'nope'" in wrong.json()["error"]
    assert client.post("/v1/feedback", content=b"{").status_code == 400
    engine = store.engine_for(service["logger"].url)
    with engine.connect() as connection:
        joined = connection.execute(
            select(PredictionLog.predicted_class, Feedback.label, PredictionLog.variant)
            .join(Feedback, Feedback.prediction_id == PredictionLog.prediction_id)
            .order_by(PredictionLog.id)).all()
    assert [tuple(row) for row in joined] == [("dark", "dark", "champion"),
                                              ("bright", "dark", "champion")]
    metrics = client.get("/metrics").text
    assert 'imgpipe_requests_total{endpoint="feedback",status="200"} 1.0' in metrics


def test_large_uploads_are_parsed_off_the_event_loop_with_the_same_answers(service):
    from imgpipe.serving.app import INLINE_BODY_BYTES
    client = service["client"]
    service["app"].state.settings.max_body_bytes = 1_000_000
    images = [noise_png(64) for _ in range(8)]
    assert sum(map(len, images)) > INLINE_BODY_BYTES        # so a parsing process reads it
    upload = client.post("/v1/models/tiny/images",
                         files=[("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)])
    assert upload.status_code == 200, upload.text
    assert len(upload.json()["predictions"]) == 8
    too_many = client.post("/v1/models/tiny/images",
                           files=[("file", (f"{i}.png", images[0], "image/png")) for i in range(17)])
    assert too_many.status_code == 413 and "the limit is 16 images" in too_many.json()["error"]
    text = client.post("/v1/models/tiny/images", data={"file": "x" * 100_000})
    assert text.status_code == 400 and "a `file` field holds text" in text.json()["error"]
    small_text = client.post("/v1/models/tiny/images", data={"file": "x"})
    assert small_text.status_code == 400 and "a `file` field holds text" in small_text.json()["error"]


@pytest.mark.parametrize("payload, status, message", [
    ({"instances": [np.full((8, 8, 3), 0.5).tolist()]}, 422,
     "got float64 pixels in [0.5, 0.5]; expected uint8"),
    ({"instances": [np.zeros((4, 4, 3), int).tolist()]}, 422, "one image, uint8 pixels [8, 8, 3]"),
    # A batch inside one instance: not one prediction for the first of its images.
    ({"instances": [np.zeros((5, 8, 8, 3), int).tolist()]}, 422,
     "got shape [5, 8, 8, 3]; an instance is exactly one image"),
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


@pytest.mark.parametrize("endpoint", ["predict", "upload"])
@pytest.mark.parametrize("images, status, message", [
    ([b"not an image"], 400, "not a readable JPEG or PNG"),
    # A header that passes the checks but a body TensorFlow cannot decode.
    ([png(200, size=(40, 40))[:80]], 400, "could not be decoded"),
    ([png(3, fmt="GIF")], 415, "format GIF is not supported"),
    ([png(3, size=(100, 10))], 413, "64-pixel side limit"),
    ([noise_png(64), noise_png(63)], 413, "the limit is 20,000"),   # the body
], ids=["corrupt", "truncated", "gif", "too-wide", "body-too-large"])
def test_each_bad_image_gets_its_4xx_on_both_endpoints(service, endpoint, images, status, message):
    client = service["client"]
    refused = send_images(client, endpoint, images)
    assert refused.status_code == status, refused.text
    assert message in refused.json()["error"]
    answer = send_images(client, endpoint, [png(250)])
    assert answer.status_code == 200 and answer.json()["predictions"][0]["class"] == "bright"


def test_other_refusals(service):
    client = service["client"]
    assert client.post("/v1/models/tiny:predict", content=b"{not json").status_code == 400
    too_big = client.post("/v1/models/tiny:predict", content=b" " * 30_000)
    assert too_big.status_code == 413 and "the limit is 20,000" in too_big.json()["error"]
    other = predict(client, {"instances": [b64(png(1))]}, name="other")
    assert other.status_code == 404 and "serves 'tiny'" in other.json()["error"]
    no_file = client.post("/v1/models/tiny/images", files=[("image", ("a.png", png(5), "image/png"))])
    assert no_file.status_code == 400 and "`file` fields" in no_file.json()["error"]
    many = send_images(client, "upload", [png(250, size=(2, 2))] * 17)
    assert many.status_code == 413 and "the limit is 16 images per request" in many.json()["error"]
    wrong_method = client.get("/v1/models/tiny:predict")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert client.get("/openapi.json").status_code == 404   # no API description with docs off
    garbled = client.post("/v1/models/tiny/images", content=b"--x\r\nnot a part",
                          headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert garbled.status_code == 400 and "`file` fields" in garbled.json()["error"], garbled.text
    assert predict(client, {"instances": [b64(png(250))]}).status_code == 200


def test_a_chunked_body_is_limited_as_it_arrives(service):
    refused, read = post_chunked(service, "/v1/models/tiny:predict", chunks=1000)
    assert "content-length" not in refused.request.headers
    assert refused.status_code == 413, refused.text
    assert "more than 20,000 bytes; the limit is 20,000" in refused.json()["error"]
    assert read <= 21                        # stopped at the limit, not after 1,000 chunks
    unsized, _ = post_chunked(service, "/v1/models/tiny/images", chunks=3)
    assert unsized.status_code == 411 and "Content-Length is required" in unsized.json()["error"]
    client = service["client"]
    assert predict(client, {"instances": [b64(png(250))]}).status_code == 200
    assert send_images(client, "upload", [png(250)]).status_code == 200


def test_every_answer_is_counted_and_timed_errors_included(service, monkeypatch):
    client = service["client"]

    def explode(inputs, top_k):
        raise RuntimeError("the model exploded")

    monkeypatch.setattr(service["holder"].current, "predict_each", explode)
    with pytest.raises(RuntimeError, match="the model exploded"):   # the client's view of a 500
        predict(client, {"instances": [b64(png(250))]})
    monkeypatch.undo()
    assert predict(client, {"instances": []}).status_code == 400
    assert predict(client, {"instances": [b64(png(250))]}).status_code == 200
    metrics = client.get("/metrics").text
    for status in ("500", "400", "200"):
        assert f'imgpipe_requests_total{{endpoint="predict",status="{status}"}} 1.0' in metrics
    assert 'imgpipe_request_latency_seconds_count{endpoint="predict"} 3.0' in metrics


def test_requests_beyond_the_queue_get_503_and_the_server_recovers(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    app, info = _tiny_app(tmp_path, max_queue=2)
    with TestClient(app) as client, ThreadPoolExecutor(2) as pool:
        gate = gate_model(monkeypatch, info["holder"].current)
        try:
            waiting = [pool.submit(predict, client, {"instances": [b64(png(shade))]})
                       for shade in (10, 250)]
            assert eventually(lambda: app.state.batcher.waiting == 2)
            refused = predict(client, {"instances": [b64(png(9))]})
        finally:
            gate.set()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "2 requests are already waiting for the model (the limit is 2)" in refused.json()["error"]
        assert [f.result().json()["predictions"][0]["class"] for f in waiting] == ["dark", "bright"]
        assert predict(client, {"instances": [b64(png(9))]}).status_code == 200
        assert 'imgpipe_requests_total{endpoint="predict",status="503"} 1.0' in client.get("/metrics").text


def test_a_request_is_answered_by_the_model_that_checked_it_though_another_was_swapped_in(
        service, monkeypatch):
    client, holder = service["client"], service["holder"]
    first = holder.current
    with ThreadPoolExecutor(2) as pool:
        gate = gate_model(monkeypatch, first)
        try:
            busy = pool.submit(predict, client, {"instances": [b64(png(10))]})
            assert eventually(lambda: service["app"].state.batcher.waiting == 1)
            queued = pool.submit(predict, client, {"instances": [np.zeros((8, 8, 3), np.uint8).tolist()]})
            assert eventually(lambda: service["app"].state.batcher.waiting == 2)
            # Same uid, so the champion watcher leaves it; another version and input shape.
            smaller = dataclasses.replace(first.image, height=4, width=4)
            monkeypatch.setattr(holder, "current", dataclasses.replace(first, image=smaller, version=2))
        finally:
            gate.set()
        assert busy.result().status_code == 200
        answered = queued.result()
    assert answered.status_code == 200, answered.text
    assert answered.json()["model_version"] == "1"
    refused = predict(client, {"instances": [np.zeros((8, 8, 3), np.uint8).tolist()]})
    assert refused.status_code == 422 and "uint8 pixels [4, 4, 3]" in refused.json()["error"], refused.text
    assert predict(client, {"instances": [b64(png(250))]}).json()["model_version"] == "2"


def test_a_crashed_batcher_fails_requests_clearly_and_healthz_says_unhealthy(service, monkeypatch):
    client = service["client"]
    assert client.get("/healthz").status_code == 200

    def broken(size):
        raise RuntimeError("a bug in the batching loop")

    monkeypatch.setattr(service["app"].state.batcher, "on_batch", broken)
    refused = predict(client, {"instances": [b64(png(250))]})
    assert refused.status_code == 503 and "micro-batcher crashed" in refused.json()["error"]
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unhealthy"
    assert "a bug in the batching loop" in health.json()["error"]
    again = predict(client, {"instances": [b64(png(250))]})
    assert again.status_code == 503 and "needs a restart" in again.json()["error"]


def test_a_failing_prediction_log_is_counted_and_the_server_keeps_answering(service, log_writes_fail):
    client, logger = service["client"], service["logger"]
    log_writes_fail["left"] = float("inf")
    for shade in (10, 250, 90):
        assert predict(client, {"instances": [b64(png(shade))]}).status_code == 200
    assert eventually(lambda: logger.dropped == 3)
    metrics = client.get("/metrics").text
    assert "imgpipe_prediction_log_dropped_total 3.0" in metrics
    assert "imgpipe_prediction_log_written_total 0.0" in metrics
    assert "imgpipe_prediction_log_queue_depth 0.0" in metrics
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
    answered, failures, stop = collections.Counter(), [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            try:
                response = predict(client, {"instances": [b64(png(128))]})
                if response.status_code == 200:
                    answered[response.json()["model_uid"]] += 1
                else:
                    failures.append(response.text)
            except Exception as error:  # noqa: BLE001 - a dropped connection is a failure too
                failures.append(repr(error))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        assert eventually(lambda: answered["t1"] > 0 or failures)
        brighter = str(helpers.write_tiny_saved_model(tmp_path / "model2", bias=0.3))
        publish.publish(service["url"], service["tracking"], str(tmp_path / "serving"), brighter,
                        helpers.new_version("t2"), helpers.run_record("t2", str(tmp_path / "mla")),
                        expected_champion="t1")
        assert eventually(lambda: answered["t2"] > 0 or failures)
    finally:
        stop.set()
        asker.join()
    assert failures == []
    assert answered["t1"] > 0 and answered["t2"] > 0
    assert client.get("/healthz").json()["model_uid"] == "t2"
    answer = predict(client, {"instances": [b64(png(128))]}).json()
    assert answer["model_version"] == "2" and answer["predictions"][0]["class"] == "bright"
    assert "imgpipe_model_reloads_total 1.0" in client.get("/metrics").text


def raw_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_answer(connection: socket.socket) -> str:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := connection.recv(10_000):
        received += chunk
    return received.decode()


def test_a_client_stuck_inside_its_headers_is_disconnected(loopback):
    with raw_connection(loopback["port"]) as connection:
        connection.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert connection.recv(1000) == b""          # closed by the server, not answered
        assert 0.8 < time.monotonic() - started < 5   # read_timeout_seconds = 1
    assert loopback["client"].get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/v1/models/tiny:predict", "/v1/models/tiny/images"])
def test_a_stalled_body_gets_408(loopback, path):
    with raw_connection(loopback["port"]) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
                           "Content-Type: multipart/form-data; boundary=x\r\n\r\n{".encode())
        answer = read_answer(connection)
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "the request body stalled: nothing arrived for 1 s after 1 bytes" in answer
    assert predict(loopback["client"], {"instances": [b64(png(250))]}).status_code == 200


def test_a_body_trickling_in_without_ever_stalling_gets_408(loopback):
    """A byte every 0.4 s never trips the 1 s pause limit; the minimum rate does."""
    with raw_connection(loopback["port"]) as connection:
        connection.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 500\r\nContent-Type: application/json\r\n\r\n")
        started = time.monotonic()
        for _ in range(20):                            # 8 s if nobody stopped it
            connection.sendall(b" ")
            if select.select([connection], [], [], 0.4)[0]:   # the server has answered
                break
        answer = read_answer(connection)
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "the request body is arriving too slowly" in answer and "64 KiB/s" in answer
    assert time.monotonic() - started < 5
    assert predict(loopback["client"], {"instances": [b64(png(250))]}).status_code == 200


def test_heavy_bodies_within_the_limits_do_not_stall_healthz_or_metrics(loopback):
    """Clients posting 7.7 MB nested-pixel bodies (parsed in full, then refused
    for their shape) beside probes of /healthz and /metrics: parsed on the event
    loop, or in a thread holding the GIL through json.loads, the probes waited
    0.7 s (median) and 1.5 s (worst) on two CPUs."""
    import httpx
    loopback["app"].state.settings.max_body_bytes = 10_000_000
    heavy = json.dumps({"instances": [np.full((224, 224, 3), 255, np.uint8).tolist()] * 9}).encode()
    url, stop, heavy_answers = str(loopback["client"].base_url), threading.Event(), []

    def post_heavy():
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                heavy_answers.append(client.post("/v1/models/tiny:predict", content=heavy))

    heavy_clients = [threading.Thread(target=post_heavy) for _ in range(4)]
    for thread in heavy_clients:
        thread.start()
    waits = []
    try:
        assert eventually(lambda: len(heavy_answers) >= 1, 60)
        for path in ["/healthz", "/metrics"] * 20:
            started = time.perf_counter()
            assert loopback["client"].get(path).status_code == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in heavy_clients:
            thread.join()
    assert {answer.status_code for answer in heavy_answers} == {422}
    assert "got shape [224, 224, 3]" in heavy_answers[0].json()["error"]
    assert len(heavy_answers) >= 4                  # the heavy load ran beside the probes
    assert max(waits) < 0.5, sorted(waits)[-5:]


def test_a_champion_that_cannot_be_loaded_or_looked_up_makes_the_server_say_stale(
        service, tmp_path, caplog):
    import shutil
    client, holder = service["client"], service["holder"]
    removed, load = threading.Event(), holder._load

    def load_after_removal(row):   # orders the watcher's load after the directory is gone
        removed.wait(30)
        return load(row)

    holder._load = load_after_removal
    caplog.set_level("WARNING", logger="imgpipe.serving")
    pushed = publish.publish(service["url"], service["tracking"], str(tmp_path / "serving"),
                             str(helpers.write_tiny_saved_model(tmp_path / "model2", bias=0.3)),
                             helpers.new_version("t2"), helpers.run_record("t2", str(tmp_path / "mla")),
                             expected_champion="t1")
    shutil.rmtree(pushed.serving_dir)
    removed.set()
    assert eventually(lambda: client.get("/healthz").json()["status"] == "stale")
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["model_uid"] == "t1"   # the served model
    assert health.json()["registry_champion"] == {"model_uid": "t2", "model_version": 2}
    assert "t2: cannot load its SavedModel" in health.json()["error"]
    assert "champion lookup failed; still serving tiny version 1 (t1): RegistryError: t2: cannot " \
           "load" in caplog.text
    failures = client.get("/metrics").text
    assert "imgpipe_champion_lookup_failures_total" in failures
    assert "imgpipe_champion_lookup_failures_total 0.0" not in failures
    assert predict(client, {"instances": [b64(png(250))]}).json()["model_uid"] == "t1"

    (tmp_path / "registry.db").unlink()   # the registry file vanishes
    assert eventually(lambda: client.get("/healthz").json().get("registry_champion", 1) is None)
    assert client.get("/healthz").json()["status"] == "stale"


def test_serve_shows_the_servers_warnings_without_verbose(capsys):
    import logging

    from imgpipe.pipeline import serving_cli
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:], root.level = [logging.NullHandler()], logging.ERROR   # as the CLI quiets
    serving_logger = logging.getLogger("imgpipe.serving")
    try:
        serving_cli._show_serving_warnings()
        logging.getLogger("imgpipe.serving.app").warning("champion lookup failed; test")
    finally:
        root.handlers[:], root.level = saved
        serving_logger.handlers.clear()
        serving_logger.propagate = True
        serving_logger.setLevel(logging.NOTSET)
    assert "WARNING imgpipe.serving.app: champion lookup failed; test" in capsys.readouterr().err


# -- imgpipe predict ----------------------------------------------------------------

@pytest.fixture
def tiny_champion(tmp_path):
    """The tiny model as champion of `tiny` in the registry a config with
    output_root `tmp_path/out` uses: the options for `imgpipe predict`."""
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'registry.db'}"
    out.mkdir()
    store.migrate(url)
    tracking = f"sqlite:///{out / 'mlflow.db'}"
    mlflow_sync.ensure_store(tracking)
    publish.publish(url, tracking, str(out / "serving"),
                    str(helpers.write_tiny_saved_model(tmp_path / "model")), helpers.new_version("t1"),
                    helpers.run_record("t1", str(out / "mla")))
    return ["--model", "tiny", "--set", f"pipeline.output_root='{out}'"]


def invoke_cli(*args, env=None):
    from click.testing import CliRunner

    from imgpipe.pipeline import cli
    return CliRunner().invoke(cli.main, [str(a) for a in args], env=env)


def test_predict_skips_a_fifo_named_like_an_image_and_names_it(tiny_champion, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(250))
    fifo = folder / "b.png"
    os.mkfifo(fifo)
    # Without the check, reading the FIFO blocks; a writer that opens and closes
    # it after a while turns that hang into an empty read, so the test fails.
    unblock = threading.Timer(10, lambda: open(fifo, "wb").close())
    unblock.start()
    try:
        result = invoke_cli("predict", folder, *tiny_champion, "--no-log", "--format", "json")
    finally:
        unblock.cancel()
    assert result.exit_code == 1, result.output
    assert f"{fifo}: not a regular file (a FIFO, socket or device); skipped" in result.output
    assert '"class": "bright"' in result.output
    assert "1 of 2 inputs classified" in result.output


def test_an_unreachable_prediction_log_is_a_clear_error_with_the_password_masked(tiny_champion,
                                                                                tmp_path):
    url = "postgresql://reader:s3cret@127.0.0.1:1/predictions"
    image = tmp_path / "a.png"
    image.write_bytes(png(250))
    result = invoke_cli("predict", image, *tiny_champion,
                        env={"IMGPIPE_PREDICTION_LOG_URL": url})
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)   # no traceback
    assert "Error: cannot use the prediction log at postgresql://reader:***@127.0.0.1:1/" \
           "predictions (serving.log_url or IMGPIPE_PREDICTION_LOG_URL): " in result.output
    assert "(or pass --no-log)" in result.output
    assert "s3cret" not in result.output and "registry" not in result.output.replace(
        "registry migrate", "")
    assert "Traceback" not in result.output



# -- authentication and private files -------------------------------------------------

def test_the_token_is_read_from_the_environment_or_a_file(tmp_path, monkeypatch):
    from imgpipe.serving import auth
    assert auth.read_token() is None
    monkeypatch.setenv("TINY_TOKEN", " from-env\n")
    assert auth.read_token(env_name="TINY_TOKEN") == "from-env"
    (tmp_path / "token").write_text("from-file\n")
    assert auth.read_token(file_path=str(tmp_path / "token")) == "from-file"
    (tmp_path / "empty").write_text("\n")
    for kwargs, message in [
        ({"env_name": "NOT_SET_HERE"}, "serving.auth_token_env names NOT_SET_HERE, which is not set"),
        ({"file_path": str(tmp_path / "none")}, "cannot read it (No such file or directory)"),
        ({"file_path": str(tmp_path / "empty")}, "is empty"),
        ({"env_name": "TINY_TOKEN", "file_path": str(tmp_path / "token")}, "not both"),
    ]:
        with pytest.raises(auth.AuthConfigError, match=re.escape(message)):
            auth.read_token(**kwargs)
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("example.org")


@pytest.mark.parametrize("open_paths", [("/healthz", "/metrics"), ()])
def test_a_token_guards_the_model_and_leaves_the_open_paths_open(tmp_path, open_paths):
    app, _ = _tiny_app(tmp_path, auth_token="s3cret-token", auth_open_paths=open_paths)
    with on_loopback(app) as (client, _port):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            refused = client.post("/v1/models/tiny:predict", headers=headers,
                                  json={"instances": [b64(png(250))]})
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            assert "Authorization: Bearer <token>" in refused.json()["error"]
            assert "s3cret" not in refused.text
        answer = client.post("/v1/models/tiny:predict", json={"instances": [b64(png(250))]},
                             headers={"Authorization": "Bearer s3cret-token"})
        assert answer.status_code == 200
        expected = 200 if open_paths else 401
        assert client.get("/healthz").status_code == expected
        assert client.get("/metrics").status_code == expected


@pytest.fixture
def serving_logger_restored():
    """`imgpipe serve` gives the imgpipe.serving logger a handler on the stderr of
    the moment: CliRunner's, closed after the command; put the logger back."""
    import logging
    logger = logging.getLogger("imgpipe.serving")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize("host, token, warned", [
    ("0.0.0.0", None, True), ("0.0.0.0", "t0ken", False), ("127.0.0.1", None, False)])
def test_serve_warns_when_it_listens_beyond_this_machine_without_a_token(
        tiny_champion, monkeypatch, serving_logger_restored, host, token, warned):
    import uvicorn

    from imgpipe.serving import http_server

    class NotListening:   # uvicorn's Config reconfigures logging, pytest's capture included
        def __init__(self, config):
            self.config = config

        def run(self):
            return None

    monkeypatch.setattr(uvicorn, "Server", NotListening)
    monkeypatch.setattr(http_server, "server_config", lambda *args: args)
    env = {"TINY_SERVE_TOKEN": token} if token else {}
    sets = ["--set", "serving.auth_token_env='TINY_SERVE_TOKEN'"] if token else []
    result = invoke_cli("serve", "--host", host, "--port", "8999",
                        *tiny_champion, *sets, env=env)
    assert result.exit_code == 0, result.output
    assert ("without authentication" in result.output) == warned, result.output
    assert "t0ken" not in result.output


def test_samples_and_a_new_sqlite_log_are_owner_only(tmp_path):
    samples = tmp_path / "samples"
    logger = predlog.PredictionLogger(f"sqlite:///{tmp_path / 'logs' / 'log.db'}", str(samples), 1.0)
    try:
        logger.log(record(png(3)))
        logger.log(dataclasses.replace(record(b"x"), data=None, pixels=np.zeros((8, 8, 3), np.uint8),
                                       input_hash="e" * 64))
    finally:
        logger.close()
    files = sorted(p for p in samples.rglob("*") if p.is_file())
    assert len(files) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    directories = [samples, *(p for p in samples.rglob("*") if p.is_dir())]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in directories), directories
    assert stat.S_IMODE((tmp_path / "logs" / "log.db").stat().st_mode) == 0o600
