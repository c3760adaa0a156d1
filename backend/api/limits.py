"""Load limits: a cap on request bodies (413) and a bounded gate in front of the model (429).

The model is the one scarce resource: every call that may run a forward pass goes through
:class:`ModelGate`, which lets ``concurrency`` calls run in worker threads and ``queue_size`` wait
(interactive calls ahead of evaluations); the next one is refused at once with 429 and a
``Retry-After`` estimate instead of joining an unbounded queue. Everything else (health, model
description, OpenAPI) never touches the gate.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from enum import IntEnum
from typing import TypeVar

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")


def body_too_large_message(limit: int, size: int | None = None) -> str:
    given = f"{size} bytes" if size is not None else "more than that"
    return f"request body is too large: the limit is max_body_bytes={limit}, got {given}"


class BodySizeLimit:
    """413 for bodies over `max_body_bytes`, by Content-Length up front or by counting a streamed body.

    Starlette's own limiter answers in plain text without naming the limit; docs/api.md promises JSON
    that says what is allowed, so the check lives here.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = JSONResponse({"detail": body_too_large_message(self.max_body_bytes, int(declared))},
                                    status_code=413, headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI re-raises HTTPExceptions met while reading the body; ours becomes the 413.
                    raise HTTPException(413, body_too_large_message(self.max_body_bytes))
            return message

        await self.app(scope, counting_receive, send)


class Overloaded(Exception):
    """More model calls than the gate runs plus queues: answered with 429 and Retry-After."""

    def __init__(self, concurrency: int, queue_size: int, retry_after_s: int) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        super().__init__(
            f"the server is busy: {concurrency} model call(s) running and {queue_size} waiting, which is the "
            f"limit (concurrency={concurrency}, queue_size={queue_size}); retry after {retry_after_s} s"
        )


class Priority(IntEnum):
    """Queue order: a short interactive call (one input's attention, a page of examples) goes ahead of
    queued evaluations of a whole split, so a click in the dashboard is not stuck behind them."""

    INTERACTIVE = 0
    BATCH = 1


class ModelGate:
    """Runs blocking model calls in worker threads, `concurrency` at a time, `queue_size` waiting at most.

    Slots are counted on the event loop (single-threaded), so a check and its update cannot interleave.
    Waiters are served by priority, then arrival; a finishing call hands its slot straight to the next
    waiter. The Retry-After estimate is the time the queue ahead needs at the recent call speed.
    """

    def __init__(self, concurrency: int, queue_size: int) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self._threads = anyio.CapacityLimiter(concurrency)  # gated calls never wait for other thread users
        self._running = 0
        self._waiters: list[tuple[int, int, anyio.Event]] = []  # a heap of (priority, arrival, wake-up)
        self._arrivals = itertools.count()
        self._mean_call_s = 1.0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self._mean_call_s * (self.waiting + 1) / self.concurrency))

    async def _acquire(self, priority: Priority) -> None:
        if self._running < self.concurrency and not self._waiters:
            self._running += 1
            return
        if len(self._waiters) >= self.queue_size:
            raise Overloaded(self.concurrency, self.queue_size, self.retry_after_s())
        entry = (int(priority), next(self._arrivals), anyio.Event())
        heapq.heappush(self._waiters, entry)
        try:
            await entry[2].wait()
        except BaseException:  # cancelled while queued (or just as the slot arrived)
            if entry[2].is_set():
                self._release()
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        if self._waiters:  # the slot passes on; the running count stays
            heapq.heappop(self._waiters)[2].set()
        else:
            self._running -= 1

    async def run(self, call: Callable[..., T], *args: object, priority: Priority = Priority.INTERACTIVE) -> T:
        await self._acquire(priority)

        def timed() -> T:
            started = time.perf_counter()
            try:
                return call(*args)
            finally:  # a lost update between threads only blurs an estimate
                self._mean_call_s = 0.8 * self._mean_call_s + 0.2 * (time.perf_counter() - started)

        try:
            return await anyio.to_thread.run_sync(timed, limiter=self._threads)
        finally:
            self._release()
