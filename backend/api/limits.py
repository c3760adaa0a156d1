"""Load limits: a cap on request bodies (413) and a bounded gate in front of the model (429).

The model is the one scarce resource: every forward pass of the server goes through :class:`ModelGate`,
one at a time, interactive calls ahead of chunks of batch work; when ``queue_size`` calls already wait,
a new request is refused at once with 429 and a ``Retry-After`` estimate instead of joining an unbounded
queue. Everything else (health, model description, OpenAPI) never touches the gate.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio
from headscope.engine.scheduling import Priority
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
    """More model calls waiting than the queue holds: answered with 429 and Retry-After."""

    def __init__(self, queue_size: int, retry_after_s: int) -> None:
        self.concurrency = 1
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        super().__init__(
            f"the server is busy: a model call is running and {queue_size} are waiting, which is the limit "
            f"(concurrency=1, queue_size={queue_size}); retry after {retry_after_s} s"
        )


class ModelGate:
    """The one queue for model work: one call runs at a time, the others wait by priority, then arrival.

    It is the engine's scheduler (``schedule``, blocking, from worker threads): the engine submits each
    piece of model work through it, interactive calls at ``Priority.INTERACTIVE``, chunks of batch work
    (split preparation, full-split evaluations, jobs) at ``Priority.BATCH``, so a click waits at most for
    the chunk in progress. One call at a time is what a forward pass can use on a CPU (torch already
    uses every core), so there is no concurrency setting. A thread that holds the gate and schedules
    more work runs it inline. Routes admit a request (429 when ``queue_size`` calls already wait) and
    run the engine in a worker thread with :meth:`call`; the engine queues its own work from there.
    """

    concurrency = 1

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._holder: int | None = None  # thread id running a call now
        self._waiters: list[tuple[int, int, int, threading.Event]] = []  # heap: (priority, arrival, thread, wake)
        self._arrivals = itertools.count()
        self._mean_call_s = 0.2

    @property
    def running(self) -> int:
        return 0 if self._holder is None else 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self._mean_call_s * (self.waiting + 1)))

    def admit(self) -> None:
        """Refuse a new request (Overloaded -> 429) when the queue is full; chunks of admitted work are
        never refused."""
        if self.waiting >= self.queue_size:
            raise Overloaded(self.queue_size, self.retry_after_s())

    def _acquire(self, priority: Priority) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._holder is None and not self._waiters:
                self._holder = me
                self._changed.notify_all()  # `running` changed: wake wait_until
                return
            wake = threading.Event()
            heapq.heappush(self._waiters, (int(priority), next(self._arrivals), me, wake))
            self._changed.notify_all()
        wake.wait()  # _release made this thread the holder

    def _release(self) -> None:
        with self._lock:
            if self._waiters:
                _, _, thread, wake = heapq.heappop(self._waiters)
                self._holder = thread
                wake.set()
            else:
                self._holder = None
            self._changed.notify_all()

    def schedule(self, call: Callable[[], T], priority: Priority = Priority.INTERACTIVE) -> T:
        """Run `call` in this thread when its turn comes (the engine's Scheduler interface)."""
        if self._holder == threading.get_ident():
            return call()
        self._acquire(priority)
        started = time.perf_counter()
        try:
            return call()
        finally:
            self._mean_call_s = 0.8 * self._mean_call_s + 0.2 * (time.perf_counter() - started)
            self._release()

    def wait_until(self, predicate: Callable[[ModelGate], bool], timeout: float | None = None) -> bool:
        """Block until `predicate(gate)` holds (checked at every change of the queue); for tests and tools."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    async def call(self, call: Callable[..., T], *args: object) -> T:
        """Admit a request and run `call` (an engine operation that schedules its own model work) in a
        worker thread, without holding the gate itself."""
        self.admit()
        return await anyio.to_thread.run_sync(partial(call, *args))

    async def run(self, call: Callable[..., T], *args: object, priority: Priority = Priority.INTERACTIVE) -> T:
        """Admit a request and run `call` in a worker thread holding the gate for all of it: for a short
        model call that does not schedule its own work (it must not wait for another engine computation,
        such as a split's preparation, that itself waits for the gate)."""
        self.admit()
        return await anyio.to_thread.run_sync(partial(self.schedule, partial(call, *args), priority))
