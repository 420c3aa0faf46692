"""One worker process as the gateway sees it: spawn, protocol, log capture, kill.

Why ``asyncio.create_subprocess_exec`` of a small entry point (``runtimes.worker_main``)
rather than ``multiprocessing``: the gateway runs an event loop and threads, so ``fork`` is
unsafe; ``spawn``/``forkserver`` pickle through pipes we would still have to wait on from the
loop, and their children inherit the gateway's environment and ``sys.path``. An exec'd worker
gets exactly the environment and working directory we give it, its own ``sys.path``, its own
process group (so a kill also ends anything the handler started), and three pipes the loop
reads without blocking: a length-prefixed JSON protocol on stdin/stdout and the handler's
output on stderr. Protocol details: ``runtimes.worker_main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from sockway.runtimes.worker_main import HEADER, LOG_FLUSHED, encode

# Lambda's payload limit for a synchronous invocation (6 MB); a larger answer ends the worker.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
LOG_FLUSH_WAIT_S = 1.0  # bound on waiting for a worker's last log lines after an answer
MAX_LOG_LINE_BYTES = 256 * 1024  # a longer output line is replaced by a note in the log
# What one invocation (or a worker's init) may write to the gateway's log: past it, its output
# is read and dropped, with one note where it was cut and one with the total dropped. A handler
# printing in a loop cannot flood the gateway's log or disk (100 MB of stdout was 113 MB of
# log). Lambda bounds its logs too: 256 KB per CloudWatch event, the last 4 KB for LogType=Tail.
MAX_LOG_BYTES_PER_INVOCATION = 1024 * 1024


class WorkerExited(Exception):
    """The worker ended (exit, signal, out of memory) or broke the protocol."""

    def __init__(self, reason: str, error_type: str = "Runtime.ExitError") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


class InitFailed(Exception):
    """Importing the handler failed; fields as Lambda reports an init error."""

    def __init__(self, error_type: str, message: str, stack: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack = stack


LogLine = Callable[[str | None, str], None]  # (request id or None during init, line)


def exit_reason(returncode: int | None) -> str:
    """Lambda's wording: ``exit status 1``, ``signal: killed``, ``signal: segmentation fault``."""
    if returncode is None or returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode >= 0:
        return f"Runtime exited with error: exit status {returncode}"
    # Lambda's runtime API words signals as Go does: glibc's strsignal, lower-cased.
    name = signal.strsignal(-returncode) or f"signal {-returncode}"
    name = name.lower()
    return f"Runtime exited with error: signal: {name}"


class Worker:
    """A started worker process. One invocation at a time (the pool guarantees it)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        generation: int,
        log_line: LogLine,
        *,
        replies: asyncio.StreamReader | None = None,
        output: asyncio.StreamReader | None = None,
    ):
        """``replies`` / ``output``: where the worker's answers and its log output arrive
        (default: its stdout and stderr; the Node.js runtime uses other pipes)."""
        self.proc = proc
        self._replies = replies if replies is not None else proc.stdout
        self._output = output if output is not None else proc.stderr
        self.generation = generation
        self.request_id: str | None = None
        self.init_ms = 0.0
        self.max_memory_mb = 0
        self._log_line = log_line
        self._log_budget = MAX_LOG_BYTES_PER_INVOCATION  # of the current invocation (or init)
        self._dropped_bytes = 0
        self._dropped_lines = 0
        self._flushed = asyncio.Event()
        self._logs = asyncio.get_running_loop().create_task(self._capture_logs())

    @classmethod
    async def spawn(
        cls,
        *,
        code_dir: Path | None,
        ref: str,
        memory_mb: int,
        fresh_source: bool,
        env: Mapping[str, str],
        generation: int,
        log_line: LogLine,
    ) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-u",
            "-m",
            "sockway.runtimes.worker_main",
            str(code_dir or ""),
            ref,
            str(memory_mb),
            "fresh" if fresh_source else "cached",  # --reload: ignore .pyc files in code_dir
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=str(code_dir) if code_dir is not None else None,
            start_new_session=True,  # own process group: killpg ends the handler's children too
            limit=MAX_LOG_LINE_BYTES,  # longest output line kept whole
        )
        return cls(proc, generation, log_line)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def wait_ready(self) -> None:
        """Wait for the end of the init phase; raise ``InitFailed`` or ``WorkerExited``."""
        started = time.monotonic()
        message = await self._receive()
        if message.get("type") == "init_error":
            raise InitFailed(
                str(message.get("errorType")),
                str(message.get("errorMessage")),
                "".join(message.get("stackTrace") or []),
            )
        if message.get("type") != "ready":
            raise WorkerExited(f"unexpected message from worker: {message.get('type')!r}")
        self.init_ms = (time.monotonic() - started) * 1000

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one invocation and return the worker's answer (``result`` or ``error``)."""
        self._flushed.clear()
        self._end_of_output()  # the previous invocation's (or init's) output ends here
        self._log_budget = MAX_LOG_BYTES_PER_INVOCATION
        assert self.proc.stdin is not None
        self.proc.stdin.write(encode(request))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.proc.stdin.drain()  # if the worker is gone, _receive reports how it ended
        return await self._receive()

    async def _receive(self) -> dict[str, Any]:
        replies = self._replies
        assert replies is not None
        try:
            (size,) = HEADER.unpack(await replies.readexactly(HEADER.size))
            if size > MAX_RESPONSE_BYTES:
                self.kill()
                raise WorkerExited(
                    f"Response payload size ({size} bytes) exceeded maximum allowed payload "
                    f"size ({MAX_RESPONSE_BYTES} bytes).",
                    "Function.ResponseSizeTooLarge",
                )
            body = await replies.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            returncode = await self.proc.wait()
            raise WorkerExited(exit_reason(returncode)) from None
        message = orjson.loads(body)
        if message.get("type") == "oom":
            self.kill()
            raise WorkerExited("Runtime exited with error: signal: killed", "Runtime.OutOfMemory")
        if not isinstance(message, dict):
            raise WorkerExited("malformed message from worker")
        rss = message.get("maxRssKb")
        if isinstance(rss, int):
            self.max_memory_mb = max(self.max_memory_mb, -(-rss // 1024))
        return message

    async def logs_flushed(self, *, answered: bool) -> None:
        """Wait (bounded) until the handler's output of the last invocation has been logged:
        up to the worker's flush marker if it answered, else until its stderr closes."""
        if answered and self._flushed.is_set():
            return  # the marker came with the answer: no waiting (the usual case)
        waiter = self._flushed.wait() if answered else asyncio.shield(self._logs)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOG_FLUSH_WAIT_S):
                await waiter

    async def _capture_logs(self) -> None:
        stream = self._output
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than the reader's limit: asyncio drops what it read
                line = b"[sockway: an output line longer than 256 KiB was dropped]\n"
            if not line:
                return
            if line == LOG_FLUSHED:
                self._end_of_output()
                self._flushed.set()
                continue
            self._budgeted(line)

    def _budgeted(self, line: bytes) -> None:
        """Log ``line`` unless this invocation's output is over its bound."""
        if self._log_budget < len(line):
            if self._log_budget >= 0:
                self._log_line(
                    self.request_id,
                    f"[sockway: this invocation wrote over {MAX_LOG_BYTES_PER_INVOCATION} bytes "
                    "of output; the rest of it is dropped]",
                )
                self._log_budget = -1
            self._dropped_bytes += len(line)
            self._dropped_lines += 1
            return
        self._log_budget -= len(line)
        self._log_line(self.request_id, line.decode(errors="replace").rstrip("\n"))

    def _end_of_output(self) -> None:
        """Say how much of the invocation's output was dropped, once, at its end."""
        if self._dropped_lines:
            self._log_line(
                self.request_id,
                f"[sockway: dropped {self._dropped_bytes} bytes ({self._dropped_lines} lines) "
                "of this invocation's output]",
            )
        self._dropped_bytes = self._dropped_lines = 0

    def kill(self) -> None:
        """SIGKILL the worker's process group (idempotent)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> None:
        self.kill()
        await self.proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._logs), LOG_FLUSH_WAIT_S)
        self._logs.cancel()
