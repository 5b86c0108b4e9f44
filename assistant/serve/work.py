"""Model work off the event loop: a fixed set of worker threads, a bounded queue, one deadline per request.

A request is admitted only while fewer than `workers + queue` are admitted; the next one is answered
503 with `Retry-After` at once (backpressure rather than a pile of threads all waiting on the model
lock). An admitted request gets `deadline_s` in all; when it passes, the client gets 504 while the
thread finishes what it started. Its slot is released only when the thread is done, so work that
overran still counts against admission and cannot pile up behind the client's back. `/health` and
`/v1/models` never touch this pool.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Busy(Exception):
    """Every worker is busy and the queue is full."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before its work finished."""


class WorkPool:
    def __init__(self, workers: int, queue: int, deadline_s: float):
        self.capacity, self.deadline_s = workers + queue, deadline_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="murmurscope-work")
        self._admitted = 0
        self._lock = threading.Lock()

    def admit(self) -> Ticket:
        with self._lock:
            if self._admitted >= self.capacity:
                raise Busy
            self._admitted += 1
        return Ticket(self, time.monotonic() + self.deadline_s)

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1


class Ticket:
    """One admitted request: its deadline, and its slot until the last piece of its work is done."""

    def __init__(self, pool: WorkPool, deadline: float):
        self.pool, self.deadline = pool, deadline
        self._pending: Future | None = None
        self._closed = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def run(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` on a worker; DeadlineExceeded when the deadline passes first."""
        if self.remaining() <= 0:
            raise DeadlineExceeded
        future = self.pool._executor.submit(fn, *args)
        self._pending = future
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.remaining())
        except TimeoutError:
            raise DeadlineExceeded from None

    async def iterate(self, items: Iterator[T]) -> AsyncIterator[T]:
        """The items of a blocking iterator, each pulled on a worker, all within the deadline."""
        done = object()
        while True:
            item = await self.run(next, items, done)
            if item is done:
                return
            yield item

    def close(self, then: Callable[[], object] | None = None) -> None:
        """Give the slot back (and run `then`) now, or when the work still running on a worker finishes."""
        if self._closed:
            return
        self._closed = True

        def finish(_: object = None) -> None:
            try:
                if then is not None:
                    then()
            finally:
                self.pool._release()

        if self._pending is None or self._pending.done():
            finish()
        else:
            self._pending.add_done_callback(finish)
