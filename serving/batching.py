"""Micro-batching: concurrent requests share one model call.

One model call runs at a time, in a worker thread; the requests that arrive
meanwhile wait and the next call takes them, up to `max_batch` images. So an
idle server answers a lone request at once, and a busy one batches by itself.
`max_wait_ms` > 0 also holds a batch open that long for more requests (bigger
batches, added latency). With max_batch = 1 every request calls the model on
its own (the comparison in BENCHMARKS.md).

Two lanes, so a request of hundreds of images cannot hold up the small ones:
requests of up to `max_batch` images wait whole, in arrival order, and each
call takes them first; requests of more images wait in the bulk lane and
fill what room is left, a slice at a time, across as many calls as they
need. A small request thus waits at most for one call of `max_batch` images.
At most `max_queue` requests wait for the model; more are refused
(QueueFull) rather than piling up in memory.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable, Deque, List, Optional, Tuple

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The request was not run: the batcher is stopped or has crashed."""


class QueueFull(Unavailable):
    """The request was not run: `max_queue` requests are already waiting."""


class _Waiting:
    """A submitted request: its items, how many were taken, their results so far."""

    def __init__(self, items: List[Any], future: asyncio.Future):
        self.items, self.future = items, future
        self.taken, self.results = 0, []          # results arrive in order: one call at a time

    @property
    def left(self) -> int:
        return len(self.items) - self.taken


_Slice = Tuple[_Waiting, int, int]                # (request, start, stop) in one model call


class MicroBatcher:
    def __init__(self, run: Callable[[List[Any]], List[Any]], max_batch: int, max_wait_ms: float,
                 on_batch: Optional[Callable[[int], None]] = None, max_queue: int = 256):
        self._run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000.0
        self.on_batch, self.max_queue = on_batch, max_queue
        self.waiting = 0                      # requests submitted and not yet answered
        self.failure: Optional[BaseException] = None   # why the batching task died, if it did
        self._small: Deque[_Waiting] = collections.deque()
        self._bulk: Deque[_Waiting] = collections.deque()
        self._arrived: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._running: List[_Slice] = []      # in the model call now
        self._stopped = False

    def start(self) -> None:
        # Created here, on the running loop the requests will await it from.
        self._arrived = asyncio.Event()
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
        if self._arrived is None:
            raise RuntimeError("MicroBatcher.submit() before start()")
        if self.failure is not None:
            raise Unavailable(f"the micro-batcher has crashed ({self.failure!r}); "
                              "the server needs a restart")
        if self._stopped:
            raise Unavailable("the server is shutting down; the request was not run")
        # Counted across both paths below, so direct calls cannot pile up either.
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are already waiting for the model "
                            f"(the limit is {self.max_queue}); retry shortly")
        self.waiting += 1
        try:
            loop = asyncio.get_running_loop()
            if self.max_batch <= 1:
                if self.on_batch:
                    self.on_batch(len(items))
                return await loop.run_in_executor(None, self._run, items)
            request = _Waiting(items, loop.create_future())
            (self._small if len(items) <= self.max_batch else self._bulk).append(request)
            self._arrived.set()
            return await request.future
        finally:
            self.waiting -= 1

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
        waiting = [request for request, _, _ in self._running] + list(self._small) + list(self._bulk)
        self._running = []
        self._small.clear()
        self._bulk.clear()
        for request in waiting:
            if not request.future.done():
                request.future.set_exception(error)

    def _take(self, batch: List[_Slice], size: int) -> int:
        """Adds waiting work to `batch`: whole small requests first, in order,
        then slices of bulk ones into the room left. Returns the new size."""
        while self._small and size + self._small[0].left <= self.max_batch:
            request = self._small.popleft()
            if not request.future.done():          # cancelled while it waited: skip it
                batch.append((request, 0, len(request.items)))
                request.taken, size = len(request.items), size + len(request.items)
        while self._bulk and size < self.max_batch:
            request = self._bulk[0]
            count = min(request.left, self.max_batch - size)
            if not request.future.done():
                batch.append((request, request.taken, request.taken + count))
                size += count
            request.taken += count
            if request.left == 0 or request.future.done():
                self._bulk.popleft()
        return size

    async def _next_batch(self) -> List[_Slice]:
        """The next call's work: what waits now, held open `max_wait` for more."""
        loop = asyncio.get_running_loop()
        batch: List[_Slice] = []
        while not batch:
            self._arrived.clear()
            if not (self._small or self._bulk):
                await self._arrived.wait()
            size = self._take(batch, 0)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch and (remaining := deadline - loop.time()) > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
            size = self._take(batch, size)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._running = await self._next_batch()
            items = [item for request, start, stop in batch for item in request.items[start:stop]]
            if self.on_batch:
                self.on_batch(len(items))
            try:
                results = await loop.run_in_executor(None, self._run, items)
            except Exception as error:  # noqa: BLE001 - every request in the call gets the error
                for request, _, _ in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                self._running = []
                continue
            offset = 0
            for request, start, stop in batch:
                request.results.extend(results[offset:offset + stop - start])
                offset += stop - start
                if len(request.results) == len(request.items) and not request.future.done():
                    request.future.set_result(request.results)
            self._running = []
