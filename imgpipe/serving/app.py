"""`imgpipe serve`: the champion over HTTP (FastAPI), TF Serving's REST shape.

POST /v1/models/<name>:predict   {"instances": [{"b64": "<image bytes>"}, ...]}
                                  or {"instances": [<uint8 [h][w][c] arrays>]}
POST /v1/models/<name>/images     multipart upload, one or more `file` fields
GET  /v1/models/<name>            the model being served
GET  /healthz, GET /metrics       liveness; Prometheus metrics

Bad input gets a 4xx JSON {"error": ...} saying what was expected, and the
server keeps serving; when `max_queue` requests already wait for the model,
more get 503 with Retry-After. The champion is looked up every
`reload_seconds`; a new one is loaded beside the old and swapped in, so no
request is dropped. /metrics counts and times every answer, errors included.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import dataclasses
import json
import logging
import time
from typing import Any, Callable, List, Optional

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from imgpipe.serving import model as served
from imgpipe.serving.batching import MicroBatcher, QueueFull, Unavailable
from imgpipe.serving.predlog import LogRecord, PredictionLogger

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ServiceSettings:
    model_name: str
    max_batch: int = 32
    max_wait_ms: float = 0.0
    max_queue: int = 256
    max_body_bytes: int = 10_000_000
    max_instances: int = 256
    top_k: int = 3
    reload_seconds: float = 10.0
    limits: served.Limits = served.Limits()


@dataclasses.dataclass
class Item:
    """One image of a request, checked: encoded bytes or uint8 pixels."""
    data: Optional[bytes] = None
    pixels: Optional[np.ndarray] = None

    @property
    def payload(self) -> served.ModelInput:
        return self.data if self.data is not None else self.pixels


class ModelHolder:
    """The model being served, swapped when the registry's champion changes."""

    def __init__(self, resolve_row: Callable[[], Any], load: Callable[[Any], served.ServedModel]):
        self._resolve_row, self._load = resolve_row, load
        self.current = load(resolve_row())
        self.reloads = 0

    def refresh(self) -> bool:
        row = self._resolve_row()
        if row.model_uid == self.current.uid:
            return False
        fresh = self._load(row)
        self.current, self.reloads = fresh, self.reloads + 1  # one reference swap
        log.info("now serving %s version %s (%s)", fresh.name, fresh.version, fresh.uid)
        return True


class _PredictionLogCollector:
    """The prediction log's counts, read from the logger at each scrape."""

    def __init__(self, logger: PredictionLogger):
        self.logger = logger

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        yield CounterMetricFamily("imgpipe_prediction_log_written", "Prediction log rows written",
                                  value=self.logger.written)
        yield CounterMetricFamily("imgpipe_prediction_log_dropped",
                                  "Prediction log rows dropped (queue full or write failed)",
                                  value=self.logger.dropped)
        yield GaugeMetricFamily("imgpipe_prediction_log_queue_depth",
                                "Prediction log records waiting to be written",
                                value=self.logger.queued)


class _ObserveRequests:
    """Counts and times every answer of the model endpoints, whatever its status:
    an unhandled exception is counted as the 500 the outer middleware sends."""

    ENDPOINTS = {"predict", "upload", "status"}  # route names, the `endpoint` label

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = getattr(scope.get("route"), "name", None)
            if endpoint in self.ENDPOINTS:
                self.metrics["requests"].labels(endpoint, str(status)).inc()
                self.metrics["latency"].labels(endpoint).observe(time.perf_counter() - started)


def _metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    registry = CollectorRegistry()
    return registry, {
        "requests": Counter("imgpipe_requests", "Prediction requests", ["endpoint", "status"],
                            registry=registry),
        "latency": Histogram("imgpipe_request_latency_seconds", "Request latency", ["endpoint"],
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10),
                             registry=registry),
        "batch": Histogram("imgpipe_batch_size", "Images per model call",
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=registry),
        "confidence": Gauge("imgpipe_mean_confidence",
                            "Mean top-1 confidence of the last 1000 predictions", registry=registry),
        "version": Gauge("imgpipe_model_version", "Registry version being served", ["model_uid"],
                         registry=registry),
        "reloads": Counter("imgpipe_model_reloads", "Champion changes picked up", registry=registry),
    }


def create_app(settings: ServiceSettings, holder: ModelHolder,
               logger: Optional[PredictionLogger] = None):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    metrics_registry, metrics = _metrics()
    if logger is not None:
        metrics_registry.register(_PredictionLogCollector(logger))
    recent = collections.deque(maxlen=1000)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        metrics["version"].labels(holder.current.uid).set(holder.current.version)
        watcher = asyncio.get_running_loop().create_task(watch_champion())
        try:
            yield
        finally:
            watcher.cancel()
            await batcher.stop()
            if logger is not None:
                await asyncio.get_running_loop().run_in_executor(None, logger.close)

    app = FastAPI(title="imgpipe", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_middleware(_ObserveRequests, metrics=metrics)

    def run_batch(items: List[Item]) -> List[Any]:
        """(model, prediction, model ms) or an InputRejected, per item."""
        model = holder.current  # the model of this batch, whatever swaps meanwhile
        results: List[Any] = [None] * len(items)
        runnable = []
        for index, item in enumerate(items):
            # Pixels were checked against the model served at parse time; a reload
            # may have swapped in one of another shape since.
            if item.pixels is not None and tuple(item.pixels.shape) != tuple(model.image_shape):
                results[index] = served.InputRejected(422, (
                    f"got shape {list(item.pixels.shape)}; {model.name} version {model.version}, "
                    f"swapped in while the request waited, expects {list(model.image_shape)} "
                    "uint8 pixels (or send encoded images, which are resized in the graph)"))
            else:
                runnable.append(index)
        started = time.perf_counter()
        predicted = (model.predict_each([items[i].payload for i in runnable], settings.top_k)
                     if runnable else [])
        elapsed_ms = (time.perf_counter() - started) * 1000
        for index, result in zip(runnable, predicted):
            results[index] = (result if isinstance(result, served.InputRejected)
                              else (model, result, elapsed_ms))
        return results

    batcher = MicroBatcher(run_batch, settings.max_batch, settings.max_wait_ms,
                           on_batch=metrics["batch"].observe, max_queue=settings.max_queue)

    async def watch_champion() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(settings.reload_seconds)
            try:
                if await loop.run_in_executor(None, holder.refresh):
                    metrics["reloads"].inc()
                    metrics["version"].clear()
                    metrics["version"].labels(holder.current.uid).set(holder.current.version)
            except Exception as error:  # noqa: BLE001 - keep serving the current model
                log.warning("champion lookup failed; still serving %s: %s", holder.current.uid, error)

    def error(status: int, message: str, headers: Optional[dict] = None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def check_name(name: str):
        if name != settings.model_name:
            return error(404, f"no model {name!r} here; this server serves "
                              f"{settings.model_name!r}")
        return None

    def too_large(size: str):
        return error(413, f"request body is {size} bytes; the limit is "
                          f"{settings.max_body_bytes:,}")

    async def read_body(request: Request):
        declared = request.headers.get("content-length")
        if declared and int(declared) > settings.max_body_bytes:
            return None, too_large(f"{int(declared):,}")
        # Counted as it arrives: a chunked body has no Content-Length to check first.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                return None, too_large(f"more than {settings.max_body_bytes:,}")
            chunks.append(chunk)
        return b"".join(chunks), None

    async def answer(items: List[Item]):
        try:
            results = await batcher.submit(items)
        except QueueFull as full:
            return error(503, str(full), headers={"Retry-After": "1"})
        except Unavailable as stopped:
            return error(503, str(stopped))
        rejected = [r for r in results if isinstance(r, served.InputRejected)]
        if rejected:
            index = next(i for i, r in enumerate(results) if isinstance(r, served.InputRejected))
            return error(rejected[0].status, f"instances[{index}]: {rejected[0]}")
        model = results[0][0] if results else holder.current
        predictions = []
        for item, (batch_model, prediction, model_ms) in zip(items, results):
            predictions.append(prediction.as_dict())
            recent.append(prediction.confidence)
            if logger is not None:
                logger.log(LogRecord.of(batch_model, prediction, item.payload, model_ms, "http"))
        metrics["confidence"].set(sum(recent) / len(recent) if recent else 0.0)
        return JSONResponse({"predictions": predictions, "model_name": model.name,
                             "model_version": str(model.version), "model_uid": model.uid})

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request):
        problem = check_name(name)
        if problem:
            return problem
        body, problem = await read_body(request)
        if problem:
            return problem
        try:
            payload = json.loads(body)
        except ValueError:
            return error(400, "body is not JSON; expected {\"instances\": [...]} as TF Serving "
                              "takes it")
        instances = payload.get("instances") if isinstance(payload, dict) else None
        if not isinstance(instances, list) or not instances:
            return error(400, "expected {\"instances\": [...]}: a non-empty list of "
                              "{\"b64\": \"<base64 image bytes>\"} or uint8 pixel arrays")
        if len(instances) > settings.max_instances:
            return error(413, f"{len(instances)} instances; the limit is "
                              f"{settings.max_instances} per request")
        model = holder.current
        items: List[Item] = []
        try:
            for index, instance in enumerate(instances):
                what = f"instances[{index}]"
                if isinstance(instance, dict):
                    encoded = instance.get("b64")
                    if not isinstance(encoded, str):
                        raise served.InputRejected(400, f"{what}: expected {{\"b64\": \"...\"}}")
                    try:
                        data = base64.b64decode(encoded, validate=True)
                    except (binascii.Error, ValueError):
                        raise served.InputRejected(400, f"{what}: b64 is not valid base64") from None
                    served.check_image_bytes(data, settings.limits, what)
                    items.append(Item(data=data))
                else:
                    try:
                        array = np.asarray(instance)
                    except ValueError:
                        raise served.InputRejected(422, f"{what}: a ragged array; expected "
                                                        "uint8 pixels [h][w][c]") from None
                    items.append(Item(pixels=served.check_pixels(array, model.image_shape, what)[0]))
        except served.InputRejected as rejected:
            return error(rejected.status, str(rejected))
        return await answer(items)

    @app.post("/v1/models/{name}/images")
    async def upload(name: str, request: Request):
        problem = check_name(name)
        if problem:
            return problem
        # The form parser reads the whole body; a declared length is checked first.
        declared = request.headers.get("content-length")
        if not declared:
            return error(411, "Content-Length is required: send the multipart upload with its "
                              "length, not chunked")
        if int(declared) > settings.max_body_bytes:
            return too_large(f"{int(declared):,}")
        try:
            form = await request.form(max_files=settings.max_instances)
        except Exception as failure:  # noqa: BLE001 - malformed multipart
            # Starlette reports its parser's limits as an HTTPException with a detail.
            detail = str(getattr(failure, "detail", "") or type(failure).__name__)
            if "Too many files" in detail:
                return error(413, f"more than {settings.max_instances} `file` fields; the limit "
                                  f"is {settings.max_instances} images per request")
            return error(400, f"expected a multipart/form-data upload with `file` fields "
                              f"({detail})")
        files = form.getlist("file")
        if not files:
            return error(400, "expected one or more `file` fields (multipart/form-data)")
        items = []
        try:
            for upload_file in files:
                data = await upload_file.read()
                if len(data) > settings.max_body_bytes:
                    raise served.InputRejected(413, f"{upload_file.filename}: too large")
                served.check_image_bytes(data, settings.limits, upload_file.filename or "file")
                items.append(Item(data=data))
        except served.InputRejected as rejected:
            return error(rejected.status, str(rejected))
        return await answer(items)

    @app.get("/v1/models/{name}")
    async def status(name: str):
        problem = check_name(name)
        if problem:
            return problem
        model = holder.current
        return {"model_version_status": [{"version": str(model.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}],
                "model_uid": model.uid, "class_names": model.class_names,
                "image_shape": list(model.image_shape)}

    @app.get("/healthz")
    async def healthz():
        model = holder.current
        if batcher.failure is not None:
            return JSONResponse({"status": "unhealthy", "error": f"the micro-batcher crashed "
                                 f"({batcher.failure!r}); restart the server",
                                 "model_uid": model.uid}, status_code=503)
        return {"status": "ok", "model_name": model.name, "model_version": model.version,
                "model_uid": model.uid}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    app.state.holder, app.state.settings, app.state.batcher = holder, settings, batcher
    return app


def build(config, model_name: Optional[str] = None, log_predictions: bool = True):
    """The app for a configuration: champion from the registry, log from the config."""
    name = model_name or config.registry.model_name
    url = config.registry_url
    holder = ModelHolder(lambda: served.resolve(url, name), served.load)
    logger = (PredictionLogger(config.prediction_log_url, config.samples_root,
                               config.serving.sample_rate) if log_predictions else None)
    s = config.serving
    settings = ServiceSettings(
        model_name=name, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms, max_queue=s.max_queue,
        max_body_bytes=s.max_body_bytes, max_instances=s.max_instances, top_k=s.top_k,
        reload_seconds=s.reload_seconds,
        limits=served.Limits(s.max_image_side, tuple(s.allowed_formats)))
    return create_app(settings, holder, logger)
