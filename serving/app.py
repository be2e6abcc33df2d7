"""`imgpipe serve`: the champion over HTTP (FastAPI), TF Serving's REST shape.

POST /v1/models/<name>:predict   {"instances": [{"b64": "<image bytes>"}, ...]}
                                  or {"instances": [<uint8 [h][w][c] arrays>]}
POST /v1/models/<name>/images     multipart upload, one or more `file` fields
POST /v1/feedback                 {"prediction_id": ..., "label": ...} or {"feedback": [...]}
GET  /v1/models/<name>            the model being served
GET  /healthz, GET /metrics       liveness; Prometheus metrics

Bad input gets a 4xx JSON {"error": ...} saying what was expected, and the
server keeps serving; when `max_queue` requests already wait for the model,
more get 503 with Retry-After. The champion is looked up every
`reload_seconds`; a new one is loaded beside the old and swapped in, so no
request is dropped. /metrics counts and times every answer, errors included.

Request parsing and its refusals are plain functions in parsing.py; this module
moves bytes between them, the micro-batcher and the HTTP answers.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, List, Optional, Tuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from imgpipe.registry import store
from imgpipe.serving import auth, challenger, feedback, parsing
from imgpipe.serving import model as served
from imgpipe.serving.batching import MicroBatcher, QueueFull, Unavailable
from imgpipe.serving.model import InputRejected
from imgpipe.serving.parsing import Item
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
    read_timeout_seconds: float = 10.0   # request headers; each chunk of a body
    auth_token: Optional[str] = dataclasses.field(default=None, repr=False)  # None: no auth
    auth_open_paths: tuple = ("/healthz", "/metrics")
    limits: served.Limits = served.Limits()
    challenger_mode: str = "shadow"      # shadow | split (serving/challenger.py)
    challenger_share: float = 0.1


def _failure_text(error: BaseException) -> str:
    """One line for a log or /healthz (database errors run to several)."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


class ModelHolder:
    """The model being served, swapped when the registry's champion changes.

    Also what the registry said at the last lookup: the champion's uid and
    version, or why the lookup or the load failed; the server is stale while
    that differs from the model it serves."""

    def __init__(self, resolve_row: Callable[[], Any], load: Callable[[Any], served.ServedModel]):
        self._resolve_row, self._load = resolve_row, load
        self.current = load(resolve_row())
        self.reloads = 0
        # (champion (uid, version) or None, failure or None), replaced in one
        # assignment once a lookup and load are over: /healthz, reading it from
        # another thread, never sees a new champion without its load's outcome.
        self.lookup: Tuple[Optional[tuple], Optional[str]] = (
            (self.current.uid, self.current.version), None)

    @property
    def failure(self) -> Optional[str]:
        return self.lookup[1]

    def refresh(self) -> bool:
        try:
            row = self._resolve_row()
        except Exception as error:
            self.lookup = (None, _failure_text(error))
            raise
        champion = (row.model_uid, row.version)
        if row.model_uid == self.current.uid:
            self.lookup = (champion, None)
            return False
        try:
            fresh = self._load(row)
        except Exception as error:
            self.lookup = (champion, _failure_text(error))
            raise
        self.current, self.reloads = fresh, self.reloads + 1  # one reference swap
        self.lookup = (champion, None)
        log.info("now serving %s version %s (%s)", fresh.name, fresh.version, fresh.uid)
        return True

    @property
    def stale(self) -> bool:
        champion, failure = self.lookup
        return failure is not None or champion is None or champion[0] != self.current.uid


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


class _ShadowCollector:
    """The shadow challenger's counts: requests scored, failed, skipped (queue full)."""

    def __init__(self, service: "ModelService"):
        self.service = service

    def collect(self):
        from prometheus_client.core import CounterMetricFamily
        shadow = self.service.shadow
        family = CounterMetricFamily("imgpipe_shadow_requests", "Requests the shadow challenger "
                                     "scored, failed on, or skipped (its queue full)", labels=["outcome"])
        for outcome in ("scored", "failed", "skipped"):
            family.add_metric([outcome], getattr(shadow, outcome) if shadow else 0)
        yield family


class _ObserveRequests:
    """Counts and times every answer of the model endpoints, whatever its status:
    an unhandled exception is counted as the 500 the outer middleware sends."""

    ENDPOINTS = {"predict", "upload", "status", "contract", "feedback"}  # route names, the `endpoint` label

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
        "lookup_failures": Counter("imgpipe_champion_lookup_failures",
                                   "Champion lookups or loads that failed (the old model kept serving)",
                                   registry=registry),
    }


# A body may take `read_timeout` seconds plus one second per this many bytes
# (mod_reqtimeout's MinRate): a slow link passes, a trickle of bytes that
# never pauses long enough to time out does not hold the connection for hours.
MIN_BODY_BYTES_PER_S = 64 * 1024


async def read_body(request: Request, max_body_bytes: int, read_timeout: float) -> bytes:
    """The whole body, refused (413) as soon as it is declared or read over the
    limit, and (408) when the client pauses longer than `read_timeout` seconds
    or sends slower than MIN_BODY_BYTES_PER_S beyond that allowance."""
    parsing.check_declared_length(request.headers.get("content-length"), max_body_bytes)
    body, chunks = parsing.BodyBuffer(max_body_bytes), request.stream().__aiter__()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), read_timeout)
        except StopAsyncIteration:
            return body.data()
        except asyncio.TimeoutError:
            raise InputRejected(408, f"the request body stalled: nothing arrived for "
                                     f"{read_timeout:g} s after {body.size:,} bytes") from None
        body.add(chunk)
        elapsed = loop.time() - started
        if elapsed > read_timeout + body.size / MIN_BODY_BYTES_PER_S:
            raise InputRejected(408, f"the request body is arriving too slowly: {body.size:,} "
                                     f"bytes in {elapsed:.1f} s; the minimum is "
                                     f"{MIN_BODY_BYTES_PER_S // 1024} KiB/s after the first "
                                     f"{read_timeout:g} s")


# Bodies up to this size are parsed on the event loop (well under a millisecond):
# a normal request never waits in the pool's queue behind a heavy one.
INLINE_BODY_BYTES = 64 * 1024


@functools.lru_cache(maxsize=None)
def parse_pool() -> ProcessPoolExecutor:
    """The request-parsing processes, one per CPU but one (left to the event
    loop and the model), started on first use and stopped with the app.
    Spawned, not forked: the server runs threads."""
    workers = max(1, (os.cpu_count() or 1) - 1)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_lower_priority)


def _lower_priority() -> None:
    """Parsing processes run only on CPU time the server process (the loop, the
    model) leaves idle: a heavy body waits longer, every other request does not.
    (`nice` 10 still took a share from the server under load.)"""
    if hasattr(os, "SCHED_IDLE"):      # Linux
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


def close_parse_pool() -> None:
    """Stops the parsing processes; the next request spawns new ones."""
    if parse_pool.cache_info().currsize:
        parse_pool().shutdown(wait=True, cancel_futures=True)
        parse_pool.cache_clear()


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _input_rejected(_request: Request, rejected: InputRejected) -> JSONResponse:
    # A 408's body was never read to its end: the connection cannot carry another request.
    return _error(rejected.status, str(rejected),
                  headers={"Connection": "close"} if rejected.status == 408 else None)


async def _queue_full(_request: Request, full: QueueFull) -> JSONResponse:
    return _error(503, str(full), headers={"Retry-After": "1"})


async def _post_only(name: str):
    return _error(405, f"{name}:predict takes POST {{\"instances\": [...]}}", headers={"Allow": "POST"})


async def _unavailable(_request: Request, stopped: Unavailable) -> JSONResponse:
    return _error(503, str(stopped))


class ModelService:
    """What the routes share: the model being served, the micro-batcher that
    calls it, the metrics and the prediction log. Routes raise InputRejected,
    QueueFull or Unavailable; create_app's handlers turn them into answers."""

    def __init__(self, settings: ServiceSettings, holder: ModelHolder,
                 logger: Optional[PredictionLogger] = None,
                 class_names_of: Optional[Callable[[str], Optional[List[str]]]] = None,
                 challengers: Optional[challenger.ChallengerHolder] = None):
        self.settings, self.holder, self.logger = settings, holder, logger
        self.class_names_of = class_names_of or self._served_class_names
        self.challengers, self.shadow = challengers, None
        self.metrics_registry, self.metrics = _metrics()
        if logger is not None:
            self.metrics_registry.register(_PredictionLogCollector(logger))
        self.metrics_registry.register(_ShadowCollector(self))
        self.recent = collections.deque(maxlen=1000)   # top-1 confidences behind the gauge
        self.batcher = MicroBatcher(self.run_batch, settings.max_batch, settings.max_wait_ms,
                                    on_batch=self.metrics["batch"].observe,
                                    max_queue=settings.max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        self.batcher.start()
        if self.challengers is not None and self.settings.challenger_mode == "shadow":
            self.shadow = challenger.ShadowRunner(self.score_shadow)
        await self.off_the_loop(INLINE_BODY_BYTES + 1, parsing.warm_up)   # no spawn in a request
        self.metrics["version"].labels(self.holder.current.uid).set(self.holder.current.version)
        watcher = asyncio.get_running_loop().create_task(self.watch_champion())
        try:
            yield
        finally:
            watcher.cancel()
            await self.batcher.stop()
            if self.shadow is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.shadow.close)
            close_parse_pool()   # its processes would outlive the server otherwise
            if self.logger is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.logger.close)

    async def watch_champion(self) -> None:
        holder, loop = self.holder, asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.reload_seconds)
            try:
                if await loop.run_in_executor(None, holder.refresh):
                    self.metrics["reloads"].inc()
                    self.metrics["version"].clear()
                    self.metrics["version"].labels(holder.current.uid).set(holder.current.version)
            except Exception:  # noqa: BLE001 - keep serving the current model
                self.metrics["lookup_failures"].inc()
                log.warning("champion lookup failed; still serving %s version %s (%s): %s",
                            holder.current.name, holder.current.version, holder.current.uid,
                            holder.failure)
            if self.challengers is not None:
                try:
                    await loop.run_in_executor(None, self.challengers.refresh)
                except Exception:  # noqa: BLE001 - the champion keeps serving without it
                    log.warning("challenger lookup or load failed", exc_info=True)

    def run_batch(self, work: List[Tuple[served.ServedModel, Item]]) -> List[Any]:
        """(prediction, model ms) or an InputRejected, per item. Each item
        runs on the model that checked it: a swap while it waited changes nothing."""
        results: List[Any] = [None] * len(work)
        by_model = {}
        for index, (model, _) in enumerate(work):
            by_model.setdefault(id(model), (model, []))[1].append(index)
        for model, indices in by_model.values():
            started = time.perf_counter()
            predicted = model.predict_each([work[i][1].payload for i in indices], self.settings.top_k)
            elapsed_ms = (time.perf_counter() - started) * 1000
            for index, result in zip(indices, predicted):
                results[index] = (result if isinstance(result, InputRejected)
                                  else (result, elapsed_ms))
        return results

    def choose(self, key: str) -> Tuple[served.ServedModel, str]:
        """The model that answers a request with this key, and its variant."""
        rival = self.challengers.current if self.challengers is not None else None
        if rival is not None and self.settings.challenger_mode == "split" \
                and challenger.assigned(key, self.settings.challenger_share):
            return rival, "challenger"
        return self.holder.current, "champion"

    def score_shadow(self, model: served.ServedModel, payloads, champion_ids: List[str]) -> None:
        """On the shadow thread: the challenger's answers, logged beside the champion's."""
        started = time.perf_counter()
        results = model.predict_each(payloads, self.settings.top_k)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for payload, result, champion_id in zip(payloads, results, champion_ids):
            if self.logger is not None and not isinstance(result, InputRejected):
                self.logger.log(LogRecord.of(model, result, payload, elapsed_ms, "shadow",
                                             str(uuid.uuid4()), "challenger", champion_id))

    async def answer(self, model: served.ServedModel, items: List[Item], variant: str = "champion",
                     key: str = "") -> JSONResponse:
        """The predictions of `model` (which checked them) for `items`, through
        the batcher; each one logged; a share handed to the shadow challenger."""
        results = await self.batcher.submit([(model, item) for item in items])
        refusal = parsing.first_refusal(results)
        if refusal is not None:
            raise refusal
        predictions = []
        for item, (prediction, model_ms) in zip(items, results):
            prediction_id = str(uuid.uuid4())   # what ground truth is sent back with
            predictions.append(prediction.as_dict() | {"prediction_id": prediction_id})
            self.recent.append(prediction.confidence)
            if self.logger is not None:
                self.logger.log(LogRecord.of(model, prediction, item.payload, model_ms, "http",
                                             prediction_id, variant))
        self.metrics["confidence"].set(sum(self.recent) / len(self.recent) if self.recent else 0.0)
        rival = self.challengers.current if self.challengers is not None else None
        if self.shadow is not None and rival is not None and variant == "champion" \
                and challenger.assigned(key, self.settings.challenger_share):
            self.shadow.submit(rival, [item.payload for item in items],
                               [p["prediction_id"] for p in predictions])
        return JSONResponse({"predictions": predictions, "model_name": model.name,
                             "model_version": str(model.version), "model_uid": model.uid,
                             "variant": variant})

    # The routes. No return annotations: FastAPI would take them for response models.

    async def off_the_loop(self, size: int, function, *args):
        """`function(*args)` in a parsing process when the body is large: json.loads
        and array conversion hold the GIL for their whole run (0.3 s for 8 MB),
        which a thread would not spare the event loop. Small bodies run here."""
        if size <= INLINE_BODY_BYTES:
            return function(*args)
        try:
            return await asyncio.get_running_loop().run_in_executor(parse_pool(), function, *args)
        except BrokenProcessPool:   # a worker died (killed, out of memory): a fresh pool next time
            parse_pool.cache_clear()
            raise Unavailable("a request-parsing process died; retry") from None

    async def predict(self, name: str, request: Request):
        settings = self.settings
        parsing.check_model_name(name, settings.model_name)
        body = await read_body(request, settings.max_body_bytes, settings.read_timeout_seconds)
        key = challenger.request_key(request.headers)
        model, variant = self.choose(key)
        return await self.answer(model, await self.off_the_loop(
            len(body), parsing.parse_instances, body, settings.max_instances, settings.limits,
            model.image_shape), variant, key)

    async def upload(self, name: str, request: Request):
        settings = self.settings
        parsing.check_model_name(name, settings.model_name)
        parsing.check_upload_length(request.headers.get("content-length"), settings.max_body_bytes)
        body = await read_body(request, settings.max_body_bytes, settings.read_timeout_seconds)
        content_type, key = request.headers.get("content-type", ""), challenger.request_key(request.headers)
        model, variant = self.choose(key)
        if len(body) > INLINE_BODY_BYTES:   # the multipart parser, too, is pure Python
            return await self.answer(model, await self.off_the_loop(
                len(body), parsing.parse_upload_body, body, content_type, settings.max_instances,
                settings.max_body_bytes, settings.limits), variant, key)
        files = await parsing.read_form_files(body, content_type, settings.max_instances)
        return await self.answer(model, parsing.parse_uploads(files, settings.max_body_bytes,
                                                              settings.limits), variant, key)

    async def status(self, name: str):
        parsing.check_model_name(name, self.settings.model_name)
        model = self.holder.current
        return {"model_version_status": [{"version": str(model.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}],
                "model_uid": model.uid, "class_names": model.class_names,
                "image_shape": list(model.image_shape)}

    async def contract(self, name: str):
        """What a client must send and what the graph does with it (the registry row's copy
        of the SavedModel's preprocessing_contract.json)."""
        parsing.check_model_name(name, self.settings.model_name)
        model = self.holder.current
        if model.contract is None:
            return _error(404, f"{model.uid} (version {model.version}) was exported without a "
                               "preprocessing contract; retrain it with this imgpipe to get one")
        return {"model_uid": model.uid, "model_version": model.version, "contract": model.contract}

    def _served_class_names(self, uid: str) -> Optional[List[str]]:
        return self.holder.current.class_names if uid == self.holder.current.uid else None

    async def feedback(self, request: Request):
        """Ground truth for logged predictions, all recorded or none (serving/feedback.py)."""
        if self.logger is None:
            return _error(503, "this server keeps no prediction log, so it has no predictions "
                               "to label")
        settings = self.settings
        body = await read_body(request, settings.max_body_bytes, settings.read_timeout_seconds)
        loop = asyncio.get_running_loop()
        try:
            labels = feedback.parse_body(body)
            # A label may follow its answer faster than the log's next write.
            await loop.run_in_executor(None, self.logger.wait_written, 2.0)
            recorded = await loop.run_in_executor(None, feedback.record, self.logger.url, labels,
                                                  self.class_names_of, "http")
        except feedback.FeedbackRefused as refused:
            return JSONResponse({"error": str(refused), "refused": refused.reasons},
                                status_code=refused.status)
        except store.RegistryError as error:   # the log's database: unreachable, not migrated
            return _error(503, f"nothing recorded: {error}")
        return {"recorded": recorded}

    async def healthz(self):
        model, failure = self.holder.current, self.batcher.failure
        if failure is not None:
            return JSONResponse({"status": "unhealthy", "error": f"the micro-batcher crashed "
                                 f"({failure!r}); restart the server",
                                 "model_uid": model.uid}, status_code=503)
        health = {"status": "ok", "model_name": model.name, "model_version": model.version,
                  "model_uid": model.uid}
        rival = self.challengers.current if self.challengers is not None else None
        if rival is not None:
            health["challenger"] = {"model_uid": rival.uid, "model_version": rival.version,
                                    "mode": self.settings.challenger_mode,
                                    "share": self.settings.challenger_share}
        if self.challengers is not None and self.challengers.failure:
            health["challenger_error"] = self.challengers.failure   # still 200: the champion serves
        if self.holder.stale:   # still 200: the model served is sound, only not the champion
            champion, failure = self.holder.lookup
            health.update(status="stale", registry_champion=None if champion is None else
                          {"model_uid": champion[0], "model_version": champion[1]},
                          error=failure)
        return health

    async def prometheus(self):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return Response(generate_latest(self.metrics_registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: ServiceSettings, holder: ModelHolder,
               logger: Optional[PredictionLogger] = None,
               class_names_of: Optional[Callable[[str], Optional[List[str]]]] = None,
               challengers: Optional[challenger.ChallengerHolder] = None) -> FastAPI:
    """`class_names_of(model_uid)` checks feedback labels (default: the served model's classes)."""
    service = ModelService(settings, holder, logger, class_names_of, challengers)
    app = FastAPI(title="imgpipe", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=service.lifespan)
    app.add_middleware(_ObserveRequests, metrics=service.metrics)
    if settings.auth_token is not None:
        app.add_middleware(auth.BearerAuth, token=settings.auth_token,
                           open_paths=settings.auth_open_paths)
    app.add_exception_handler(InputRejected, _input_rejected)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(Unavailable, _unavailable)
    # Route names are the `endpoint` label of the request metrics (_ObserveRequests).
    app.add_api_route("/v1/models/{name}:predict", service.predict, methods=["POST"], name="predict")
    app.add_api_route("/v1/models/{name}/images", service.upload, methods=["POST"], name="upload")
    # Before the status route, whose {name} would take "tiny:predict" for a name (404).
    app.add_api_route("/v1/models/{name}:predict", _post_only, methods=["GET", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    app.add_api_route("/v1/models/{name}/contract", service.contract, methods=["GET"], name="contract")
    app.add_api_route("/v1/models/{name}", service.status, methods=["GET"], name="status")
    app.add_api_route("/v1/feedback", service.feedback, methods=["POST"], name="feedback")
    app.add_api_route("/healthz", service.healthz, methods=["GET"], name="healthz")
    app.add_api_route("/metrics", service.prometheus, methods=["GET"], name="prometheus")
    app.state.holder, app.state.settings, app.state.batcher = holder, settings, service.batcher
    app.state.service = service
    return app


def build(config, model_name: Optional[str] = None, log_predictions: bool = True):
    """The app for a configuration: champion from the registry, log from the config."""
    name = model_name or config.registry.model_name
    url = config.registry_url
    holder = ModelHolder(lambda: served.resolve(url, name),
                         lambda row: served.load(row, config.serving_root))
    logger = (PredictionLogger(config.prediction_log_url, config.samples_root,
                               config.serving.sample_rate) if log_predictions else None)
    s = config.serving
    settings = ServiceSettings(
        model_name=name, max_batch=s.max_batch, max_wait_ms=s.max_wait_ms, max_queue=s.max_queue,
        max_body_bytes=s.max_body_bytes, max_instances=s.max_instances, top_k=s.top_k,
        reload_seconds=s.reload_seconds, read_timeout_seconds=s.read_timeout_seconds,
        auth_token=auth.read_token(s.auth_token_env, s.auth_token_file),
        auth_open_paths=tuple(s.auth_open_paths),
        limits=served.Limits(s.max_image_side, tuple(s.allowed_formats), s.max_pixels_per_request),
        challenger_mode=s.challenger_mode, challenger_share=s.challenger_share)
    challengers = None
    if s.challenger:
        challengers = challenger.ChallengerHolder(
            lambda: challenger.resolve(url, name, s.challenger),
            lambda row: served.load(row, config.serving_root), lambda: holder.current.uid)
    return create_app(settings, holder, logger, feedback.registry_class_names(url), challengers)
