"""One worker process as the gateway sees it: spawn, protocol, log capture, kill.

Why ``loop.subprocess_exec`` of a small entry point (``runtimes.worker_main``) rather than
``multiprocessing``: the gateway runs an event loop and threads, so ``fork`` is unsafe;
``spawn``/``forkserver`` pickle through pipes we would still have to wait on from the loop,
and their children inherit the gateway's environment and ``sys.path``. An exec'd worker gets
exactly the environment and working directory we give it, its own ``sys.path``, its own
process group (so a kill also ends anything the handler started), and three pipes the loop
reads without blocking: a length-prefixed JSON protocol on stdin/stdout and the handler's
output on stderr. Protocol details: ``runtimes.worker_main``.

The pipes are the gateway's own (``os.pipe``, connected with ``connect_read_pipe`` /
``connect_write_pipe``), read by protocols that cut frames and lines as the data arrives: no
``StreamReader`` coroutines, no task per worker for its output, and a reply wakes the waiting
invocation directly (bench/RESULTS.md, "runtime: process"; the subprocess transport's own
pipes would deliver each read one loop iteration later, through ``call_soon``).

How the handler's output is known to be complete when the answer arrives, without a marker
per invocation: the worker writes its output (fd 1 and fd 2) before its answer, so whenever
the answer is readable, all of that output is in the output pipe or already read. The loop
polls both pipes at once and runs every read callback of one poll before the callbacks they
schedule, so the output's lines are logged before the invocation, woken by its answer, goes
on to END/REPORT. Output written later (a thread, a child process the handler left running)
is logged when it comes, under no invocation, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from sockway.runtimes.pipes import Exit, Pipe, Pipes, batch_scheduling, ignore, nothing
from sockway.runtimes.worker_main import HEADER, encode

# Lambda's payload limit for a synchronous invocation (6 MB); a larger answer ends the worker.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
LOG_FLUSH_WAIT_S = 1.0  # bound on waiting for the rest of a failed or ended worker's output
MAX_LOG_LINE_BYTES = 256 * 1024  # a longer output line is replaced by a note in the log
# What one invocation (or a worker's init) may write to the gateway's log: past it, its output
# is read and dropped, with one note where it was cut and one with the total dropped. A handler
# printing in a loop cannot flood the gateway's log or disk (100 MB of stdout was 113 MB of
# log). Lambda bounds its logs too: 256 KB per CloudWatch event, the last 4 KB for LogType=Tail.
MAX_LOG_BYTES_PER_INVOCATION = 1024 * 1024
TOO_LONG = b"[sockway: an output line longer than 256 KiB was dropped]\n"


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
        process: asyncio.SubprocessTransport,
        exit_protocol: Exit,
        generation: int,
        log_line: LogLine,
    ):
        """Use ``launch`` (it connects the pipes)."""
        self._process = process
        self._exited = exit_protocol.exited
        self.pid: int = process.get_pid()
        self.generation = generation
        self.request_id: str | None = None
        self.init_ms = 0.0
        self.max_memory_mb = 0
        self._log_line = log_line
        self._log_budget = MAX_LOG_BYTES_PER_INVOCATION  # of the current invocation (or init)
        self._dropped_bytes = 0
        self._dropped_lines = 0
        self._requests: asyncio.WriteTransport | None = None
        self._requests_pipe = Pipe(ignore, nothing)
        self._pipes: list[asyncio.BaseTransport] = []
        # replies: complete frames (bytes) or the size of one refused as too large (int)
        self._replies: deque[bytes | int] = deque()
        self._reply_partial = bytearray()
        self._reply_need = HEADER.size  # bytes the partial frame needs before it is parsed
        self._replies_open = True
        self._reply_waiter: asyncio.Future[None] | None = None
        self._line = bytearray()  # an output line without its newline yet
        self._dropping_line = False  # the rest of a too long line is being dropped
        self._output_closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def launch(
        cls,
        argv: Sequence[str],
        pipes: Pipes,
        *,
        generation: int,
        log_line: LogLine,
        stdout: int | None = None,
        pass_fds: Sequence[int] = (),
        env: Mapping[str, str],
        cwd: Path | None,
    ) -> Worker:
        """Start ``argv`` on ``pipes`` (fd 0 the requests; fd 1 ``stdout``, by default the
        replies; fd 2 the output) in a process group of its own; connect the gateway's ends."""
        loop = asyncio.get_running_loop()
        try:
            process, exit_protocol = await loop.subprocess_exec(
                Exit,
                *argv,
                stdin=pipes.requests_r,
                stdout=pipes.replies_w if stdout is None else stdout,
                stderr=pipes.output_w,
                pass_fds=tuple(pass_fds),
                env=dict(env),
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,  # own process group: killpg ends its children too
            )
        except BaseException:
            pipes.close_all()
            raise
        pipes.close_child_ends()
        batch_scheduling(process.get_pid())
        worker = cls(process, exit_protocol, generation, log_line)
        try:
            await worker._connect(pipes)
        except BaseException:
            worker.kill()
            raise
        return worker

    async def _connect(self, pipes: Pipes) -> None:
        loop = asyncio.get_running_loop()
        requests = os.fdopen(pipes.requests_w, "wb", buffering=0)
        transport, _ = await loop.connect_write_pipe(lambda: self._requests_pipe, requests)
        self._requests = transport
        self._pipes.append(transport)
        replies = Pipe(self._replies_data, self._replies_end)
        pipe = os.fdopen(pipes.replies_r, "rb", buffering=0)
        self._pipes.append((await loop.connect_read_pipe(lambda: replies, pipe))[0])
        output = Pipe(self._output_data, self._output_end)
        pipe = os.fdopen(pipes.output_r, "rb", buffering=0)
        self._pipes.append((await loop.connect_read_pipe(lambda: output, pipe))[0])

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
        argv = [
            sys.executable,
            "-u",
            "-m",
            "sockway.runtimes.worker_main",
            str(code_dir or ""),
            ref,
            str(memory_mb),
            "fresh" if fresh_source else "cached",  # --reload: ignore .pyc files in code_dir
        ]
        return await cls.launch(
            argv, Pipes(), generation=generation, log_line=log_line, env=env, cwd=code_dir
        )

    @property
    def alive(self) -> bool:
        return self._process.get_returncode() is None

    async def wait(self) -> int | None:
        """Wait until the process ended; its return code (negative: the signal)."""
        await asyncio.shield(self._exited)
        return self._process.get_returncode()

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
        self._end_of_output()  # the previous invocation's (or init's) output ends here
        self._log_budget = MAX_LOG_BYTES_PER_INVOCATION
        requests = self._requests
        assert requests is not None
        if not requests.is_closing():  # else the worker is gone: _receive says how it ended
            requests.write(encode(request))
            paused = self._requests_pipe.paused
            if paused is not None:  # over the pipe's write limit (a large event)
                await paused
        return await self._receive()

    async def _receive(self) -> dict[str, Any]:
        if not self._replies:
            if self._replies_open:
                self._reply_waiter = waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    self._reply_waiter = None
            if not self._replies:
                returncode = await self.wait()
                raise WorkerExited(exit_reason(returncode))
        body = self._replies.popleft()
        if isinstance(body, int):
            self.kill()
            raise WorkerExited(
                f"Response payload size ({body} bytes) exceeded maximum allowed payload "
                f"size ({MAX_RESPONSE_BYTES} bytes).",
                "Function.ResponseSizeTooLarge",
            )
        message = orjson.loads(body)
        if not isinstance(message, dict):
            raise WorkerExited("malformed message from worker")
        if message.get("type") == "oom":
            self.kill()
            raise WorkerExited("Runtime exited with error: signal: killed", "Runtime.OutOfMemory")
        rss = message.get("maxRssKb")
        if isinstance(rss, int):
            self.max_memory_mb = max(self.max_memory_mb, -(-rss // 1024))
        return message

    def _replies_data(self, data: bytes) -> None:
        """Cut the replies pipe's data into frames; wake the invocation waiting for one."""
        if not self._replies_open:
            return  # after a refused frame: the worker is being killed
        partial = self._reply_partial
        if partial:
            partial += data
            if len(partial) < self._reply_need:
                return
            data = bytes(partial)
            partial.clear()
        end, size = 0, 0
        pos, total = 0, len(data)
        while total - pos >= HEADER.size:
            (size,) = HEADER.unpack_from(data, pos)
            if size > MAX_RESPONSE_BYTES:
                self._replies.append(size)
                self._replies_open = False
                break
            end = pos + HEADER.size + size
            if end > total:
                break
            self._replies.append(data[pos + HEADER.size : end])
            pos = end
        else:
            size = 0  # what is left is not even a header: the partial needs one
        if self._replies_open and pos < total:
            partial += memoryview(data)[pos:]
            self._reply_need = HEADER.size + size
        self._wake()

    def _replies_end(self) -> None:
        self._replies_open = False
        self._wake()

    def _wake(self) -> None:
        waiter = self._reply_waiter
        if waiter is not None and not waiter.done() and (self._replies or not self._replies_open):
            waiter.set_result(None)

    def end_of_answer(self) -> None:
        """The invocation was answered: its output is all in (module docstring); log its last
        line if it has no newline, and what was dropped."""
        if self._line:
            self._output_line(bytes(self._line))
            self._line.clear()
        self._end_of_output()

    async def output_closed(self) -> None:
        """Wait (bounded) until the worker's output pipe closed and all of it was logged."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOG_FLUSH_WAIT_S):
                await asyncio.shield(self._output_closed)

    async def logs_flushed(self, *, answered: bool) -> None:
        """The last invocation's output has been logged: at once if it answered, else once the
        output pipe closed (bounded)."""
        if answered:
            self.end_of_answer()
        else:
            await self.output_closed()

    def _output_data(self, data: bytes) -> None:
        """Cut the output pipe's data into lines, each logged as it completes."""
        line = self._line
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._dropping_line:
                self._dropping_line = False  # the end of a line already reported as too long
            elif line:
                line += memoryview(data)[start : end + 1]
                self._output_line(bytes(line))
                line.clear()
            else:
                self._output_line(data[start : end + 1])
            start = end + 1
        if start < len(data) and not self._dropping_line:
            line += memoryview(data)[start:]
            if len(line) > MAX_LOG_LINE_BYTES:
                line.clear()
                self._dropping_line = True
                self._output_line(TOO_LONG)

    def _output_end(self) -> None:
        if self._line:
            self._output_line(bytes(self._line))
            self._line.clear()
        self._end_of_output()
        if not self._output_closed.done():
            self._output_closed.set_result(None)

    def _output_line(self, line: bytes) -> None:
        self._budgeted(TOO_LONG if len(line) > MAX_LOG_LINE_BYTES else line)

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
                os.killpg(self.pid, signal.SIGKILL)

    async def reap(self) -> None:
        """Kill, wait for the end, log what is left of the output (bounded), close the pipes."""
        self.kill()
        await self.wait()
        await self.output_closed()
        for pipe in self._pipes:
            pipe.close()
        self._process.close()
