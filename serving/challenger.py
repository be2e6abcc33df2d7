"""A challenger beside the champion in `imgpipe serve`.

"split": a share of requests is answered by the challenger instead; which
ones is a stable hash of the client's key (X-Client-Key) or of the request
id, so one client sees one model. "shadow": the champion answers everything;
the challenger also scores a share of requests on its own thread, off the
response path: its slowness or failures reach no client, and when its queue
is full the request is skipped and counted, never waited for.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable, List, Optional, Sequence

from imgpipe.registry import store

log = logging.getLogger(__name__)
SHADOW_QUEUE = 64            # requests waiting for the shadow model; more are skipped
SHADOW_BATCH = 32            # requests scored in one call of the shadow model
CLIENT_KEY_HEADER = "x-client-key"


def assigned(key: str, share: float) -> bool:
    """Stable: the same key is always in the share or never (sha256, not Python's hash)."""
    return share > 0 and int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0x100000000 < share


def request_key(headers) -> str:
    """The client's key, else a fresh request id (split then assigns each request)."""
    return headers.get(CLIENT_KEY_HEADER) or str(uuid.uuid4())


def resolve(registry_url: str, model_name: str, reference: str) -> Optional[Any]:
    """The challenger's registry row: "<model>@<version>", or "newest" (the newest
    blessed version never promoted: None when there is none). A rolled-back or
    archived version is never "newest": a rollback takes all traffic back."""
    engine = store.require_schema(registry_url)
    if reference == "newest":
        rows = [row for row in store.list_versions(engine, model_name)
                if row.blessed and row.status == "registered"]
        return rows[0] if rows else None
    name, version = reference.rsplit("@", 1)
    if name != model_name:
        raise store.RegistryError(f"serving.challenger {reference!r} names model {name!r}; this "
                                  f"server serves {model_name!r}")
    return store.version_of(engine, name, int(version))


class ChallengerHolder:
    """The challenger being served (or None), looked up again at every reload."""

    def __init__(self, resolve_row: Callable[[], Any], load: Callable[[Any], Any],
                 champion_uid: Callable[[], str]):
        self._resolve_row, self._load, self._champion_uid = resolve_row, load, champion_uid
        self.current = None
        self.failure: Optional[str] = None
        self.refresh()

    def refresh(self) -> bool:
        """True when the challenger changed. The champion itself is never its challenger."""
        previous = self.failure
        try:
            row = self._resolve_row()
        except store.RegistryError as error:
            self.failure = str(error)
            return False
        self.failure = None
        if row is None or row.model_uid == self._champion_uid():
            changed, self.current = self.current is not None, None
            return changed
        if self.current is not None and self.current.uid == row.model_uid:
            return False
        try:
            loaded = self._load(row)
        except Exception as error:  # noqa: BLE001 - the champion serves on without it; retried at reload
            first_line = (str(error).splitlines() or [""])[0][:300]
            failure = (f"challenger {row.model_name} version {row.version} ({row.model_uid}) "
                       f"could not be loaded: {type(error).__name__}: {first_line}")
            if failure != previous:   # once, not at every reload that retries it
                log.error("%s; not served (retried at every reload)", failure)
            self.failure = failure
            return False
        self.current = loaded
        log.info("challenger: %s version %s (%s)", row.model_name, row.version, row.model_uid)
        return True


class ShadowRunner:
    """Scores requests with the shadow model on its own thread, then logs them."""

    def __init__(self, score: Callable[[Any, Sequence[Any], List[str]], None],
                 max_queue: int = SHADOW_QUEUE):
        self._score = score
        self._queue: "queue.Queue" = queue.Queue(maxsize=max_queue)
        self.scored = self.failed = self.skipped = 0
        self._thread = threading.Thread(target=self._run, name="shadow-challenger", daemon=True)
        self._thread.start()

    def submit(self, model, payloads: Sequence[Any], champion_ids: List[str]) -> bool:
        try:
            self._queue.put_nowait((model, list(payloads), champion_ids))
            return True
        except queue.Full:
            self.skipped += 1
            return False

    def close(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        self._queue.put(None)
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1)

    def _take(self) -> Optional[list]:
        """What waits, up to SHADOW_BATCH requests (None once closed): one model call
        for all of them, as the micro-batcher does for the champion."""
        first = self._queue.get()
        if first is None:
            return None
        works = [first]
        while len(works) < SHADOW_BATCH:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                break
            if work is None:
                self._queue.put(None)    # seen after this batch
                self._queue.task_done()
                break
            works.append(work)
        return works

    def _run(self) -> None:
        while True:
            works = self._take()
            if works is None:
                return
            by_model: dict = {}
            for model, payloads, ids in works:
                batch = by_model.setdefault(id(model), (model, [], [], []))
                batch[1].extend(payloads)
                batch[2].extend(ids)
                batch[3].append(len(payloads))
            for model, payloads, ids, requests in by_model.values():
                try:
                    self._score(model, payloads, ids)
                    self.scored += len(requests)
                except Exception:  # noqa: BLE001 - a failing challenger never stops serving
                    self.failed += len(requests)
                    log.exception("shadow challenger failed on %d requests", len(requests))
            for _ in works:
                self._queue.task_done()
