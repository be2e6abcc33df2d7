"""Micro-batching: concurrent requests share one model call.

One model call runs at a time, in a worker thread; the requests that arrive
meanwhile queue up and the next call takes them all, up to `max_batch`
images. So an idle server answers a lone request at once, and a busy one
batches by itself. `max_wait_ms` > 0 also holds a batch open that long for
more requests (bigger batches, added latency). With max_batch = 1 every
request calls the model on its own (the comparison in BENCHMARKS.md).
At most `max_queue` requests wait for the model; more are refused (QueueFull)
rather than piling up in memory.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, List, Optional, Tuple

log = logging.getLogger(__name__)

_Request = Tuple[List[Any], asyncio.Future]


class Unavailable(Exception):
    """The request was not run: the batcher is stopped or has crashed."""


class QueueFull(Unavailable):
    """The request was not run: `max_queue` requests are already waiting."""


class MicroBatcher:
    def __init__(self, run: Callable[[List[Any]], List[Any]], max_batch: int, max_wait_ms: float,
                 on_batch: Optional[Callable[[int], None]] = None, max_queue: int = 256):
        self._run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000.0
        self.on_batch, self.max_queue = on_batch, max_queue
        self.waiting = 0                      # requests submitted and not yet answered
        self.failure: Optional[BaseException] = None   # why the batching task died, if it did
        self._queue: Optional["asyncio.Queue[_Request]"] = None
        self._task: Optional[asyncio.Task] = None
        self._held: Optional[_Request] = None
        self._pending: List[_Request] = []    # taken off the queue, not yet answered
        self._stopped = False

    def start(self) -> None:
        # Created here, on the running loop the requests will await it from.
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._stopped, self.failure = False, None
        if self.max_batch > 1:
            self._task = asyncio.get_running_loop().create_task(self._loop())
            self._task.add_done_callback(self._finished)

    async def stop(self) -> None:
        self._stopped = True
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._fail_waiting(Unavailable("the server is shutting down; the request was not run"))

    async def submit(self, items: List[Any]) -> List[Any]:
        """Results for `items`, in order (a request's images stay together)."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit() before start()")
        if self.failure is not None:
            raise Unavailable(f"the micro-batcher has crashed ({self.failure!r}); "
                              "the server needs a restart")
        if self._stopped:
            raise Unavailable("the server is shutting down; the request was not run")
        # Counted across both paths below, so direct calls cannot pile up either.
        if self.waiting >= self.max_queue:
            raise self._full()
        self.waiting += 1
        try:
            loop = asyncio.get_running_loop()
            if self.max_batch <= 1 or len(items) >= self.max_batch:
                if self.on_batch:
                    self.on_batch(len(items))
                return await loop.run_in_executor(None, self._run, items)
            future = loop.create_future()
            try:
                self._queue.put_nowait((items, future))
            except asyncio.QueueFull:  # cancelled requests can still hold places
                raise self._full() from None
            return await future
        finally:
            self.waiting -= 1

    def _full(self) -> QueueFull:
        return QueueFull(f"{self.waiting} requests are already waiting for the model "
                         f"(the limit is {self.max_queue}); retry shortly")

    def _finished(self, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        self.failure = error
        log.error("micro-batcher crashed; failing waiting requests", exc_info=error)
        self._fail_waiting(Unavailable(f"the micro-batcher crashed ({error!r}); "
                                       "the request was not run"))

    def _fail_waiting(self, error: Exception) -> None:
        """Every request taken or queued but not answered gets `error`, none hangs."""
        waiting = list(self._pending) + ([self._held] if self._held else [])
        self._pending, self._held = [], None
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for _, future in waiting:
            if not future.done():
                future.set_exception(error)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._held is not None:
                pending, self._held = [self._held], None
            else:
                pending = [await self._queue.get()]
            self._pending = pending
            size = len(pending[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                if not self._queue.empty():
                    request = self._queue.get_nowait()     # already waiting: take it
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        request = await asyncio.wait_for(self._queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if size + len(request[0]) > self.max_batch:
                    self._held = request                    # first of the next batch
                    break
                pending.append(request)
                size += len(request[0])
            items = [item for request, _ in pending for item in request]
            if self.on_batch:
                self.on_batch(len(items))
            try:
                results = await loop.run_in_executor(None, self._run, items)
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                self._pending = []
                continue
            start = 0
            for request, future in pending:
                if not future.done():
                    future.set_result(results[start:start + len(request)])
                start += len(request)
            self._pending = []
