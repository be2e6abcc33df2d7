"""The prediction log: every prediction appended, off the request path.

`PredictionLogger.log()` only puts a record on a queue; a background thread
writes batches to the `prediction_log` table (SQLite by default, the
registry's database for teams) and keeps a sample of the inputs on disk for
`imgpipe monitor`'s skew check. `close()` flushes what is queued.

The queue is bounded: when the database cannot keep up, records are dropped
and counted rather than held in memory. A failed write is retried a few
times; rows still not written are counted as dropped. `written`, `dropped`
and `queued` are exported on the service's /metrics.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import queue
import threading
import time
from typing import List, Optional

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from imgpipe.registry import store
from imgpipe.registry.models import PredictionLog

log = logging.getLogger(__name__)
_FLUSH_SECONDS = 0.5
_BATCH = 500
_ATTEMPTS = 3           # tries per batch before its rows count as dropped
_BACKOFF_SECONDS = 0.2  # doubled after each failed try


@dataclasses.dataclass
class LogRecord:
    model_name: str
    model_uid: str
    model_version: int
    input_hash: str
    predicted_class: str
    class_id: int
    confidence: float
    latency_ms: float
    source: str
    # The input itself, kept only when sampled: encoded bytes or uint8 pixels.
    data: Optional[bytes] = None
    pixels: Optional[np.ndarray] = None
    pixel_stats: Optional[dict] = None     # array requests: pixel_stats(array)
    prediction_id: Optional[str] = None    # what the answer carried (feedback joins on it)
    variant: Optional[str] = None          # champion | challenger
    shadow_of: Optional[str] = None        # a shadow answer: the champion's prediction id
    created_at: dt.datetime = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc))

    @classmethod
    def of(cls, model, prediction, payload, latency_ms: float, source: str,
           prediction_id: Optional[str] = None, variant: Optional[str] = None,
           shadow_of: Optional[str] = None) -> "LogRecord":
        """The record of one prediction by a ServedModel on one ModelInput."""
        from imgpipe.serving.model import input_hash
        is_bytes = isinstance(payload, bytes)
        return cls(model_name=model.name, model_uid=model.uid, model_version=model.version,
                   input_hash=input_hash(payload), predicted_class=prediction.class_name,
                   class_id=prediction.class_id, confidence=prediction.confidence,
                   latency_ms=latency_ms, source=source,
                   data=payload if is_bytes else None, pixels=None if is_bytes else payload,
                   pixel_stats=None if is_bytes else pixel_stats(payload),
                   prediction_id=prediction_id, variant=variant, shadow_of=shadow_of)


_NO_STATS = dict.fromkeys(("pixel_min", "pixel_max", "pixel_mean", "saturation", "channel_means"))


def pixel_stats(pixels: np.ndarray) -> dict:
    """Range, mean, saturation and per-channel means of one uint8 array [h, w, c]."""
    values = np.asarray(pixels)
    return {"pixel_min": float(values.min()), "pixel_max": float(values.max()),
            "pixel_mean": float(values.mean()),
            "saturation": float(((values == 0) | (values == 255)).mean()),
            "channel_means": [float(v) for v in values.reshape(-1, values.shape[-1]).mean(axis=0)]}


def sampled(input_hash: str, rate: float) -> bool:
    """Deterministic by content: the same input is always kept or never."""
    return rate > 0 and int(input_hash[:8], 16) / 0xFFFFFFFF < rate


def sample_path(root: str, record: LogRecord) -> str:
    suffix = ".npy" if record.pixels is not None else _image_suffix(record.data or b"")
    return os.path.join(root, record.model_name, record.created_at.strftime("%Y%m%d"),
                        record.input_hash + suffix)


def _image_suffix(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def _private_dirs(directory: str) -> None:
    """Creates `directory` and its missing parents owner-only (0700): samples are
    user images. os.makedirs gives only the last one its mode, and the umask may
    widen nothing but narrow it, so each is made and set in turn."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for created in reversed(missing):
        try:
            os.mkdir(created, 0o700)
        except FileExistsError:   # another writer was first
            continue
        os.chmod(created, 0o700)


def _write_sample(path: str, record: LogRecord) -> None:
    _private_dirs(os.path.dirname(path))
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        if record.pixels is not None:
            np.save(handle, record.pixels)
        else:
            handle.write(record.data)


class PredictionLogUnavailable(store.RegistryError):
    """The prediction log's database cannot be used; the message names it (password masked)."""


def _masked_failure(error: BaseException, url: str) -> str:
    """The error's first line, without the URL's password should the driver repeat it."""
    text = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    password = make_url(url).password
    return text.replace(password, "***") if password else text


def open_log_database(url: str) -> None:
    """A local (SQLite) log is created on first use; a shared database is
    migrated by its owners and must be at the code's schema revision."""
    where = (f"the prediction log at {store.mask_url(url)} (serving.log_url or "
             "IMGPIPE_PREDICTION_LOG_URL)")
    try:
        if url.startswith("sqlite"):
            store.migrate(url)   # engine_for creates the file owner-only
            return
        revision = store.current_revision(url)
    except Exception as error:  # noqa: BLE001 - any driver's connection failure
        raise PredictionLogUnavailable(f"cannot use {where}: {_masked_failure(error, url)}") from None
    if revision != store.head_revision():
        raise PredictionLogUnavailable(
            f"{where} is at schema revision {revision or 'none'}, this code needs "
            f"{store.head_revision()}; run `imgpipe registry migrate` against that database")


class PredictionLogger:
    def __init__(self, url: str, samples_root: str, sample_rate: float, max_queue: int = 10_000):
        open_log_database(url)
        self.url, self.samples_root, self.sample_rate = url, samples_root, sample_rate
        self._engine = store.engine_for(url)
        self._queue: "queue.Queue[Optional[LogRecord]]" = queue.Queue(maxsize=max_queue)
        self._counts = threading.Lock()
        self.written = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def log(self, record: LogRecord, wait: bool = False) -> None:
        """Queue `record`; when the queue is full, drop and count it, or with
        `wait` (batch jobs, where no request is held up) wait for room."""
        if not sampled(record.input_hash, self.sample_rate):
            # Decided here, so the queue holds input bytes only for kept samples.
            record = dataclasses.replace(record, data=None, pixels=None)
        try:
            self._queue.put(record, block=wait)
        except queue.Full:
            dropped = self._count(dropped=1)
            if dropped == 1 or dropped % 1000 == 0:  # a warning, not one per request
                log.warning("prediction log: queue full (%d records); %d records dropped so far",
                            self._queue.maxsize, dropped)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def wait_written(self, timeout: float) -> bool:
        """Waits until every record queued so far is written (or dropped), at most
        `timeout` seconds: feedback may follow its prediction faster than a flush."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.all_tasks_done.wait(left)
        return True

    def _count(self, written: int = 0, dropped: int = 0) -> int:
        with self._counts:
            self.written += written
            self.dropped += dropped
            return self.dropped

    def _run(self) -> None:
        done = False
        while not done:
            batch: List[LogRecord] = []
            try:
                done = self._take(batch)
                if batch:
                    self._write(batch)
            except Exception:  # noqa: BLE001 - the writer outlives any one bad batch
                self._count(dropped=len(batch))
                log.exception("prediction log: %d records dropped", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _take(self, batch: List[LogRecord]) -> bool:
        """Fills `batch` with what is queued; True once close() was called."""
        try:
            item = self._queue.get(timeout=_FLUSH_SECONDS)
            while item is not None:
                batch.append(item)
                if len(batch) >= _BATCH:
                    return False
                item = self._queue.get_nowait()
            return True
        except queue.Empty:
            return False

    def _write(self, batch: List[LogRecord]) -> None:
        rows = []
        for record in batch:
            path = None
            if record.data is not None or record.pixels is not None:  # sampled in log()
                path = sample_path(self.samples_root, record)
                try:
                    _write_sample(path, record)
                except OSError as error:
                    log.warning("prediction log: cannot keep sample %s: %s", path, error)
                    path = None
            rows.append({"created_at": record.created_at, "model_name": record.model_name,
                         "model_uid": record.model_uid, "model_version": record.model_version,
                         "input_hash": record.input_hash, "predicted_class": record.predicted_class,
                         "class_id": record.class_id, "confidence": record.confidence,
                         "latency_ms": record.latency_ms, "source": record.source,
                         "sample_path": path, "prediction_id": record.prediction_id,
                         "variant": record.variant, "shadow_of": record.shadow_of,
                         **(record.pixel_stats or _NO_STATS)})
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._engine.begin() as connection:
                    connection.execute(insert(PredictionLog), rows)
            except Exception as error:  # noqa: BLE001 - the service keeps serving; retried, counted
                if attempt < _ATTEMPTS:
                    log.warning("prediction log: writing %d records to %s failed (try %d of %d), "
                                "retrying: %s", len(rows), store.mask_url(self.url), attempt,
                                _ATTEMPTS, error)
                    time.sleep(_BACKOFF_SECONDS * 2 ** (attempt - 1))
                    continue
                self._count(dropped=len(rows))
                log.error("prediction log: %d records not written to %s after %d tries: %s",
                          len(rows), store.mask_url(self.url), _ATTEMPTS, error)
                return
            self._count(written=len(rows))
            return


def _window(url: str, since: dt.datetime):
    """(engine, `since` as the database compares it), or None when nothing has
    been predicted (and logged) here yet: a SQLite file that does not exist."""
    database = make_url(url).database
    if url.startswith("sqlite") and database and not os.path.exists(database):
        return None
    engine = store.require_schema(url)
    if engine.dialect.name == "sqlite":  # stored without a zone, in UTC
        since = since.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return engine, since


def read(url: str, model_name: str, since: dt.datetime,
         model_uid: Optional[str] = None) -> List[PredictionLog]:
    window = _window(url, since)
    if window is None:
        return []
    engine, since = window
    query = select(PredictionLog).where(PredictionLog.model_name == model_name,
                                        PredictionLog.created_at >= since)
    if model_uid is not None:
        query = query.where(PredictionLog.model_uid == model_uid)
    from sqlalchemy.orm import Session
    with Session(engine) as session:
        return list(session.scalars(query.order_by(PredictionLog.created_at)))


def challenger_uids(url: str, model_name: str, since: dt.datetime) -> List[str]:
    """The model_uids that answered (or shadowed) as the challenger in the window."""
    window = _window(url, since)
    if window is None:
        return []
    engine, since = window
    query = (select(PredictionLog.model_uid).distinct()
             .where(PredictionLog.model_name == model_name, PredictionLog.created_at >= since,
                    PredictionLog.variant == "challenger")
             .order_by(PredictionLog.model_uid))
    with engine.connect() as connection:
        return [uid for (uid,) in connection.execute(query)]


def read_labelled(url: str, model_name: str, since: dt.datetime):
    """The window's predictions that have a label, as live_quality.Labelled: a
    label sent for a champion's answer also labels its shadow challenger's."""
    from sqlalchemy import or_
    from sqlalchemy.orm import Session

    from imgpipe.registry.models import Feedback
    from imgpipe.serving.live_quality import Labelled
    window = _window(url, since)
    if window is None:
        return []
    engine, since = window
    query = (select(PredictionLog.variant, PredictionLog.model_uid, PredictionLog.predicted_class,
                    Feedback.label, PredictionLog.confidence, PredictionLog.created_at,
                    PredictionLog.prediction_id, PredictionLog.shadow_of)
             .join(Feedback, or_(Feedback.prediction_id == PredictionLog.prediction_id,
                                 Feedback.prediction_id == PredictionLog.shadow_of))
             .where(PredictionLog.model_name == model_name, PredictionLog.created_at >= since)
             .order_by(PredictionLog.created_at))
    with Session(engine) as session:
        return [Labelled(variant or "champion", uid, predicted, label, confidence,
                         created if created.tzinfo else created.replace(tzinfo=dt.timezone.utc),
                         prediction_id, shadow_of)
                for variant, uid, predicted, label, confidence, created, prediction_id, shadow_of
                in session.execute(query)]
