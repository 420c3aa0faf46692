"""The gateway's ends of a worker process's pipes, and its scheduling (``runtimes.worker``).

A worker gets three pipes the gateway creates itself (``Pipes``): requests on its fd 0,
replies, and output (fd 2, and fd 1 for the Python worker). The gateway's ends are connected
with ``connect_read_pipe`` / ``connect_write_pipe`` and read by ``Pipe`` protocols that hand
each read to the worker at once (``data_received``), where the subprocess transport's own pipes
would deliver it one loop iteration later through ``call_soon``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable


class Pipe(asyncio.Protocol):
    """The gateway's end of one of a worker's pipes: data and end to the worker's methods."""

    def __init__(self, on_data: Callable[[bytes], None], on_end: Callable[[], None]) -> None:
        self._on_data = on_data
        self._on_end = on_end
        self.paused: asyncio.Future[None] | None = None  # a writer's: set while over its limit

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_end()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self.paused is None:
            self.paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.paused is not None:
            if not self.paused.done():
                self.paused.set_result(None)
            self.paused = None


class Exit(asyncio.SubprocessProtocol):
    """The worker process itself (its pipes have a ``Pipe`` each): when it ends."""

    def __init__(self) -> None:
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class Pipes:
    """A worker's three pipes before it starts: requests (its fd 0), replies, output."""

    def __init__(self) -> None:
        self.requests_r, self.requests_w = os.pipe()
        self.replies_r, self.replies_w = os.pipe()
        self.output_r, self.output_w = os.pipe()

    def close_child_ends(self) -> None:
        for fd in (self.requests_r, self.replies_w, self.output_w):
            os.close(fd)

    def close_all(self) -> None:
        self.close_child_ends()
        for fd in (self.requests_w, self.replies_r, self.output_r):
            os.close(fd)


def batch_scheduling(pid: int) -> None:
    """Run the worker under ``SCHED_BATCH`` (same CPU share, same nice level): a worker woken
    by a request then waits for the gateway to block instead of preempting it in the middle of
    its loop iteration. Where handlers and the gateway share a core, the gateway writes every
    ready request before the workers run, and reads their answers in one wakeup: two process
    switches per batch of requests instead of two per request (bench/RESULTS.md, "runtime:
    process"). Set right after the spawn, while the worker has its one thread (threads it
    starts inherit it)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or the worker is gone
        os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))


def ignore(data: bytes) -> None:
    """Data on the requests pipe's protocol: never (it is written, not read)."""


def nothing() -> None:
    pass
