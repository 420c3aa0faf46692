"""What an in-process handler prints or logs, prefixed as Lambda prefixes it and kept per
invocation.

On Lambda every line a Python function writes carries the time, the request id and the level
(``[INFO]\\t2026-12-02T15:43:42.123Z\\t<request id>\\t<message>``). In-process handlers share
this interpreter's stdout, so ``capture(request_id)`` marks the invocation in a context
variable: ``print()`` output is written with that prefix, ``logging`` records made while it
runs get ``request_id`` (the gateway's log formats show it), and both are kept in
``HandlerOutput.lines`` (bounded) for the live console. Outside an invocation stdout is
untouched. Sync handlers see the variable because ``PythonIntegration`` runs them in a copy of
the caller's context.

Worker processes (``runtime: process`` and ``runtime: nodejs``) format their own lines as
Lambda does; the lines they write while an invocation runs are kept for it too (``record``).
Not captured: the HTTP and Lambda runtimes (their output stays where it goes today).
"""

from __future__ import annotations

import io
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, TextIO

MAX_LINES = 200  # per invocation, for the console; later lines are counted, not kept
MAX_LINE_CHARS = 4000


class HandlerOutput:
    """The lines one invocation printed or logged (Lambda-prefixed), bounded."""

    __slots__ = ("_partial", "dropped", "lines", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.lines: list[str] = []
        self.dropped = 0
        self._partial = ""

    def add(self, level: str, message: str) -> str:
        line = f"[{level}]\t{_now()}\t{self.request_id}\t{message}"
        if len(self.lines) < MAX_LINES:
            self.lines.append(line[:MAX_LINE_CHARS])
        else:
            self.dropped += 1
        return line


_current: ContextVar[HandlerOutput | None] = ContextVar("sockway_handler_output", default=None)
# The invocations being captured, by request id: output that arrives on another task (a
# worker process's log lines, ``runtimes/process.py``) finds its invocation here.
_active: dict[str, HandlerOutput] = {}


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


class capture:
    """Attribute what is printed and logged in this context to ``request_id``.

    A class, not a generator-based context manager: it runs once per invocation, and this
    costs a third of ``contextlib.contextmanager``'s ~1.5 µs.
    """

    __slots__ = ("_token", "output")

    def __init__(self, request_id: str) -> None:
        self.output = HandlerOutput(request_id)

    def __enter__(self) -> HandlerOutput:
        if not _installed():
            install()
        self._token = _current.set(self.output)
        _active[self.output.request_id] = self.output
        return self.output

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
        output = self.output
        _active.pop(output.request_id, None)
        if output._partial:  # a print(..., end="") never finished by a newline
            _write_line(output, output._partial)
            output._partial = ""


def current() -> HandlerOutput | None:
    return _current.get()


def record(request_id: str, line: str) -> None:
    """Keep ``line`` (already formatted, e.g. by a worker process) for the invocation
    ``request_id`` if it is being captured; nothing otherwise."""
    output = _active.get(request_id)
    if output is None:
        return
    if len(output.lines) < MAX_LINES:
        output.lines.append(line[:MAX_LINE_CHARS])
    else:
        output.dropped += 1


class _HandlerStdout(io.TextIOBase):
    """``sys.stdout`` while handlers run in-process: lines written inside an invocation get
    Lambda's prefix; everything else passes through unchanged."""

    def __init__(self, real: TextIO) -> None:
        self.real = real

    def write(self, text: str) -> int:
        output = _current.get()
        if output is None:
            return self.real.write(text)
        pending = output._partial + text
        *complete, output._partial = pending.split("\n")
        for line in complete:
            _write_line(output, line)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()


def _write_line(output: HandlerOutput, line: str) -> None:
    prefixed = output.add("INFO", line)
    stream = sys.stdout
    real = stream.real if isinstance(stream, _HandlerStdout) else stream
    real.write(prefixed + "\n")


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    output = _current.get()
    if output is not None and record.name.split(".")[0] != "sockway":
        record.request_id = output.request_id
        output.add(record.levelname, record.getMessage())
    return record


def _installed() -> bool:
    return (
        isinstance(sys.stdout, _HandlerStdout) and logging.getLogRecordFactory() is _record_factory
    )


def install() -> None:
    """Put the prefixing stdout and the log-record hook in place (idempotent; cheap)."""
    if not isinstance(sys.stdout, _HandlerStdout):
        sys.stdout = _HandlerStdout(sys.stdout)
    global _base_factory
    current_factory = logging.getLogRecordFactory()
    if current_factory is not _record_factory:
        _base_factory = current_factory  # chain to whatever was installed before us
        logging.setLogRecordFactory(_record_factory)
