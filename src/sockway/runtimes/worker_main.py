"""The worker process of the process runtime: ``python -u -m sockway.runtimes.worker_main``.

One worker serves one function, one invocation at a time, as a Lambda execution environment
does. The gateway (``runtimes.process``) starts it with the function's environment and
``cwd`` = ``code_dir``, then speaks length-prefixed JSON over the worker's stdin/stdout:

- every message is a 4-byte big-endian length followed by that many bytes of JSON;
- worker → gateway, once: ``{"type": "ready"}`` after the handler module was imported (the
  init phase), or ``{"type": "init_error", "errorType", "errorMessage", "stackTrace"}``;
- gateway → worker, per invocation: ``{"requestId", "event", "timeoutMs", "arn",
  "reportMemory"}``;
- worker → gateway, per invocation: ``{"type": "result", "payload", "maxRssKb"}`` or
  ``{"type": "error", "errorType", "errorMessage", "stackTrace", "maxRssKb"}`` (the shape of
  Lambda's function error), or ``{"type": "oom"}`` just before the worker exits after a
  ``MemoryError`` (Lambda reports ``Runtime.OutOfMemory`` and replaces the environment).
  ``maxRssKb`` (the peak for REPORT's ``Max Memory Used``) only when ``reportMemory`` asked
  for it: reading it is a ``/proc`` read, the dearest syscall of an invocation.

The protocol keeps private copies of fd 0 and fd 1; the handler's fd 0 is ``/dev/null`` and its
fd 1 is fd 2, so ``print``, ``logging`` and output of C extensions all reach the gateway's log
capture (stderr) and can never corrupt the protocol. The worker flushes ``sys.stdout`` and
``sys.stderr`` before it answers: whatever the handler wrote is in the output pipe before the
answer is in the replies pipe, which is how the gateway knows the output of an invocation is
complete when its answer comes (``runtimes.worker``), so it can print ``END``/``REPORT`` after
the handler's last line. ``SystemExit`` and ``os._exit`` end the worker: the gateway reports
``Runtime.ExitError``.

``memory_mb`` is enforced with ``RLIMIT_DATA`` set before the handler is imported (heap, private
anonymous mappings and thread stacks; not shared libraries or file mappings): an allocation past
the limit fails with ``MemoryError``, which the worker turns into ``Runtime.OutOfMemory``.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

import orjson

HEADER = struct.Struct(">I")
OOM_FRAME = b'{"type":"oom"}'
READ_SIZE = 65536  # one read takes a whole request of usual size: header and body at once


def encode(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return HEADER.pack(len(body)) + body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Requests:
    """The gateway's requests, read from ``fd`` in as few reads as they allow."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def _fill(self, size: int) -> bool:
        """At least ``size`` bytes buffered; ``False`` at the end of the input."""
        while len(self._buffer) < size:
            chunk = os.read(self._fd, max(READ_SIZE, size - len(self._buffer)))
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def next(self) -> dict[str, Any] | None:
        """The next request; ``None`` when the gateway closed our stdin (exit quietly)."""
        if not self._fill(HEADER.size):
            return None
        (size,) = HEADER.unpack_from(self._buffer)
        end = HEADER.size + size
        if not self._fill(end):
            return None
        message: dict[str, Any] = orjson.loads(self._buffer[HEADER.size : end])
        del self._buffer[:end]
        return message


def _limit_memory(memory_mb: int) -> None:
    import resource

    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    import traceback

    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _load(ref: str) -> Any:
    """Import the handler as Lambda's Python runtime does, with its error types."""
    import importlib

    module_name, _, func_name = ref.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise _InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", exc
        ) from exc
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}", exc
        ) from exc
    except Exception as exc:
        raise _InitError(type(exc).__name__, str(exc), exc) from exc
    func = getattr(module, func_name, None)
    if func is None:
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{func_name}' missing on module '{module_name}'"
        )
    return func


class _InitError(Exception):
    def __init__(self, error_type: str, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.cause = cause


def _compile_from_source(code_dir: str) -> None:
    """``--reload``: modules under ``code_dir`` are compiled from their source, never from a
    cached ``.pyc``. CPython validates a ``.pyc`` by the source's size and its mtime in whole
    seconds, so an edit that keeps the size, saved within the second of the previous import,
    would otherwise run the old code. Other modules (site-packages) keep their caches."""
    import importlib.machinery as machinery

    root = os.path.realpath(code_dir)

    class SourceOnlyLoader(machinery.SourceFileLoader):
        def get_code(self, fullname: str) -> Any:
            path = self.get_filename(fullname)
            return self.source_to_code(self.get_data(path), path)

    finder_for = machinery.FileFinder.path_hook(
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
        (SourceOnlyLoader, machinery.SOURCE_SUFFIXES),
    )

    def hook(path: str) -> Any:
        real = os.path.realpath(path or ".")
        if real != root and not real.startswith(root + os.sep):
            raise ImportError("not under code_dir")  # let the next hook handle it
        return finder_for(path)

    sys.dont_write_bytecode = True
    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()


def _setup_logging() -> None:
    """Lambda's Python runtime: a root handler writing ``[LEVEL]\\ttime\\tmessage`` (the gateway
    prefixes function and request id), root level WARNING unless ``AWS_LAMBDA_LOG_LEVEL``."""
    import logging
    import time

    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "WARNING").upper()
    root.setLevel(level if level in logging.getLevelNamesMapping() else "WARNING")


def main() -> None:
    protocol_in = _Requests(os.dup(0))
    protocol_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # handler output (fd 1 and fd 2) → the gateway's log capture
    code_dir, ref, memory_mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if code_dir and code_dir not in sys.path[:1]:
        sys.path.insert(0, code_dir)
    if code_dir and sys.argv[4:5] == ["fresh"]:
        _compile_from_source(code_dir)
    _setup_logging()
    import inspect  # noqa: F401  (what _serve needs is imported in the init phase)

    import sockway.runtimes.inprocess  # noqa: F401
    from sockway.runtimes.aws_hosts import redirect_aws_hosts

    redirect_aws_hosts()  # before the handler's module creates its clients
    _limit_memory(memory_mb)
    try:
        func = _load(ref)
    except _InitError as exc:
        failure = _error(exc.cause or exc, exc.error_type)
        failure["errorMessage"] = str(exc)
        _write_all(protocol_out, encode({"type": "init_error", **failure}))
        return
    except MemoryError:
        _write_all(protocol_out, HEADER.pack(len(OOM_FRAME)) + OOM_FRAME)
        os._exit(1)
    _write_all(protocol_out, encode({"type": "ready"}))
    _serve(func, protocol_in, protocol_out)


class _PeakRss:
    """Peak resident memory of this process in KiB (``VmHWM``; ``ru_maxrss`` would include
    the gateway's, as Linux keeps it across ``execve``). The status file stays open and is
    re-read with ``pread``: 6.8 µs per invocation instead of 14.7 for open/parse/close."""

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/status", os.O_RDONLY)

    def __call__(self) -> int:
        status = os.pread(self._fd, 65536, 0)
        at = status.find(b"VmHWM:")
        if at < 0:
            return 0
        return int(status[at + 6 : status.index(b"kB", at)])


def _serve(func: Any, protocol_in: _Requests, protocol_out: int) -> None:
    import inspect
    import time

    from sockway.runtimes.inprocess import LambdaContext

    oom = HEADER.pack(len(OOM_FRAME)) + OOM_FRAME  # built before any handler runs
    peak_rss_kb = _PeakRss()
    # Lambda sets these once per execution environment: read once, not per invocation.
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    log_group = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
    log_stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
    while True:
        request = protocol_in.next()
        if request is None:
            return
        context = LambdaContext(
            function_name=name,
            aws_request_id=request["requestId"],
            invoked_function_arn=request["arn"],
            memory_limit_in_mb=memory,
            deadline_monotonic=time.monotonic() + request["timeoutMs"] / 1000,
            log_group_name=log_group,
            log_stream_name=log_stream,
        )
        try:
            result = func(request["event"], context)
            if inspect.iscoroutine(result):
                import asyncio

                result = asyncio.run(result)
            reply: dict[str, Any] = {"type": "result", "payload": result}
        except MemoryError:
            result = None
            _write_all(protocol_out, oom)
            os._exit(1)
        except Exception as exc:
            reply = {"type": "error", **_error(exc)}
        sys.stdout.flush()  # the handler's output goes before the answer (module docstring)
        sys.stderr.flush()
        if request.get("reportMemory", True):
            reply["maxRssKb"] = peak_rss_kb()
        try:
            frame = encode(reply)
        except (TypeError, ValueError) as exc:  # the result is not JSON-serialisable
            frame = encode({"type": "error", **_error(exc, "Runtime.MarshalError")})
        _write_all(protocol_out, frame)


if __name__ == "__main__":
    main()
