"""Invocation deadlines on one timer wheel per event loop (issue 7: no timer per call).

``async with deadline(seconds):`` behaves as ``asyncio.timeout(seconds)`` — when the time is up
the task is cancelled and the block raises ``TimeoutError``; a cancellation from elsewhere
stays a ``CancelledError`` — but entering costs a set insert instead of a loop timer:
``asyncio.timeout`` schedules and cancels one ``TimerHandle`` per use, 3.5 µs on uvloop here
(bench/ANALYSIS.md), a sixth of a two-way round trip. Deadlines are kept in buckets of
``RESOLUTION_S`` and one timer ticks while any is pending, so a deadline fires at most
``RESOLUTION_S`` late (never early) — handler timeouts are seconds (API Gateway's 29 s, a
Lambda function's 3 s default).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from types import TracebackType

RESOLUTION_S = 0.05


class _Wheel:
    """The pending deadlines of one event loop, by bucket (``ceil(when / RESOLUTION_S)``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buckets: dict[int, set[Deadline]] = {}
        self.pending = 0
        self.next_key = 0  # the first bucket not expired yet (while the timer runs)
        self.handle: asyncio.TimerHandle | None = None

    def add(self, entry: Deadline) -> None:
        if self.handle is None:
            self.next_key = math.floor(self.loop.time() / RESOLUTION_S)
            self.handle = self.loop.call_later(RESOLUTION_S, self._tick)
        key = max(math.ceil(entry.when / RESOLUTION_S), self.next_key)
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = set()
        bucket.add(entry)
        entry.key = key
        self.pending += 1

    def remove(self, entry: Deadline) -> None:
        bucket = self.buckets.get(entry.key)
        if bucket is not None and entry in bucket:
            bucket.discard(entry)
            self.pending -= 1
            if not bucket:
                del self.buckets[entry.key]

    def _tick(self) -> None:
        self.handle = None
        now_key = math.floor(self.loop.time() / RESOLUTION_S)
        for key in range(self.next_key, now_key + 1):
            for entry in self.buckets.pop(key, ()):
                self.pending -= 1
                entry.expire()
        self.next_key = now_key + 1
        if self.pending:
            self.handle = self.loop.call_later(RESOLUTION_S, self._tick)


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()
# The wheel used last: one loop serves every deadline of a gateway, and the weak dictionary's
# lookup is a Python-level call per invocation (issue 18, two-way route profile).
_last: tuple[asyncio.AbstractEventLoop | None, _Wheel | None] = (None, None)


def _wheel_of(loop: asyncio.AbstractEventLoop) -> _Wheel:
    global _last
    last_loop, wheel = _last
    if last_loop is loop and wheel is not None:
        return wheel
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = _Wheel(loop)
    _last = (loop, wheel)
    return wheel


class Deadline:
    """One ``async with`` block bounded in time (see the module docstring)."""

    __slots__ = ("_cancelling", "_seconds", "_task", "_wheel", "expired", "key", "when")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.when = 0.0  # loop time, set on entering
        self.key = 0
        self.expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("deadline() should be used inside a task")
        # The task's loop, not get_running_loop(): on 3.11 that is a getpid() syscall per call.
        loop = task.get_loop()
        self._wheel = wheel = _wheel_of(loop)
        self.when = loop.time() + self._seconds
        self._task = task
        self._cancelling = task.cancelling()
        wheel.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.expired:
            self._wheel.remove(self)
            return
        assert self._task is not None
        # Our cancel turned into the CancelledError: it is a timeout (unless another cancel
        # request is outstanding, which then wins), as asyncio.timeout decides.
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()


def deadline(seconds: float) -> Deadline:
    """``asyncio.timeout(seconds)`` on the loop's wheel (see the module docstring)."""
    return Deadline(seconds)
