"""Micro-batching: concurrent requests share one model call.

One model call runs at a time, in a worker thread; the requests that arrive
meanwhile queue up and the next call takes them all, up to `max_batch`
images. So an idle server answers a lone request at once, and a busy one
batches by itself. `max_wait_ms` > 0 also holds a batch open that long for
more requests (bigger batches, added latency). With max_batch = 1 every
request calls the model on its own (the comparison in BENCHMARKS.md).
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Optional, Tuple


class MicroBatcher:
    def __init__(self, run: Callable[[List[Any]], List[Any]], max_batch: int, max_wait_ms: float,
                 on_batch: Optional[Callable[[int], None]] = None):
        self._run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: "asyncio.Queue[Tuple[List[Any], asyncio.Future]]" = asyncio.Queue()
        self._task: Optional[asyncio.Task] = None
        self._held: Optional[Tuple[List[Any], asyncio.Future]] = None

    def start(self) -> None:
        if self.max_batch > 1:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def submit(self, items: List[Any]) -> List[Any]:
        """Results for `items`, in order (a request's images stay together)."""
        loop = asyncio.get_running_loop()
        if self.max_batch <= 1 or len(items) >= self.max_batch:
            if self._on_batch:
                self._on_batch(len(items))
            return await loop.run_in_executor(None, self._run, items)
        future = loop.create_future()
        await self._queue.put((items, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._held is not None:
                pending, self._held = [self._held], None
            else:
                pending = [await self._queue.get()]
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
            if self._on_batch:
                self._on_batch(len(items))
            try:
                results = await loop.run_in_executor(None, self._run, items)
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for request, future in pending:
                if not future.done():
                    future.set_result(results[start:start + len(request)])
                start += len(request)
