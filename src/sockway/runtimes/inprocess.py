"""In-process Python handlers, loaded from an API's ``code_dir`` like a Lambda package.

- ``module.function`` is imported with ``code_dir`` on ``sys.path`` (first), so handlers import
  their sibling modules as they do on Lambda.
- Sync handlers run on a bounded thread pool (they block: boto3, DynamoDB, ...), so one slow
  handler never stalls other connections; async handlers are awaited on the loop.
- The handler gets a Lambda-like ``context`` (``function_name``, ``aws_request_id``,
  ``invoked_function_arn``, ``memory_limit_in_mb``, ``get_remaining_time_in_millis()``,
  ``log_group_name``, ``log_stream_name``, ...).
- A timed-out sync handler keeps running in its thread until it returns (Python cannot stop a
  thread); the caller gets ``InvocationTimeout`` at the deadline. Isolated worker processes,
  which can be killed, come with the process runtime.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sockway.runtimes import output
from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout
from sockway.runtimes.deadlines import deadline


class HandlerLoadError(Exception):
    """The ``module.function`` reference cannot be resolved (reported with its config path)."""


@dataclass
class LambdaContext:
    """The subset of Lambda's ``context`` object that handlers and Powertools read."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    deadline_monotonic: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline_monotonic - self._clock()) * 1000))


def split_handler_ref(ref: str) -> tuple[str, str]:
    """``"pkg.module.function"`` → ``("pkg.module", "function")``."""
    module, _, func = ref.rpartition(".")
    if not module or not func:
        raise HandlerLoadError(
            f"handler '{ref}' must be written as module.function (e.g. app.handler)"
        )
    return module, func


def _module_origin(module_name: str) -> str | None:
    mod = sys.modules.get(module_name)
    return getattr(mod, "__file__", None) if mod is not None else None


def load_handler(ref: str, code_dir: Path | None) -> Callable[..., Any]:
    """Import ``module.function`` from ``code_dir`` (or the installed packages).

    Raises ``HandlerLoadError`` with a message naming the module or function that is missing,
    or the exception the module raised while importing.
    """
    module_name, func_name = split_handler_ref(ref)
    if code_dir is not None:
        path = str(code_dir.resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
        top = module_name.split(".")[0]
        origin = _module_origin(top)
        if origin is not None and code_dir.resolve() not in Path(origin).resolve().parents:
            installed_elsewhere = Path(origin).resolve()
            candidate = code_dir / (top.replace(".", "/") + ".py")
            if candidate.exists() or (code_dir / top).is_dir():
                raise HandlerLoadError(
                    f"module '{top}' is already loaded from {installed_elsewhere}; in-process "
                    "handlers share one interpreter, so module names must be unique across "
                    "code_dirs"
                )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name.split(".")[0]):
            where = f" in {code_dir}" if code_dir is not None else ""
            raise HandlerLoadError(f"module '{module_name}' not found{where}") from exc
        raise HandlerLoadError(f"module '{module_name}' failed to import: {exc}") from exc
    except Exception as exc:
        raise HandlerLoadError(
            f"module '{module_name}' failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    func = getattr(module, func_name, None)
    if func is None:
        raise HandlerLoadError(f"module '{module_name}' has no function '{func_name}'")
    if not callable(func):
        raise HandlerLoadError(f"'{ref}' is not callable")
    return func  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=2)
def _log_stream(day: int) -> str:
    """Lambda's log stream name for the UTC day (a strftime per invocation cost ~3 % of an
    echo round trip; bench/ANALYSIS.md)."""
    return time.strftime("%Y/%m/%d/[$LATEST]sockway", time.gmtime(day * 86400))


class PythonIntegration:
    """A handler function called in this process."""

    def __init__(
        self,
        *,
        func: Callable[..., Any],
        function_name: str,
        function_arn: str,
        memory_limit_in_mb: int,
        executor: Executor,
    ) -> None:
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func)
        self._function_name = function_name
        self._function_arn = function_arn
        self._memory = memory_limit_in_mb
        self._executor = executor

    @property
    def function_name(self) -> str:
        return self._function_name

    def _context(self, invocation: Invocation) -> LambdaContext:
        return LambdaContext(
            function_name=self._function_name,
            aws_request_id=invocation.request_id,
            invoked_function_arn=self._function_arn,
            memory_limit_in_mb=self._memory,
            deadline_monotonic=time.monotonic() + invocation.timeout_s,
            log_group_name=f"/aws/lambda/{self._function_name}",
            log_stream_name=_log_stream(int(time.time()) // 86400),
        )

    async def invoke(self, event: dict[str, Any], invocation: Invocation) -> Any:
        context = self._context(invocation)
        try:
            # A deadline on the loop's wheel, not wait_for (a Task per call: ~10 % of the echo
            # route's samples) nor asyncio.timeout (a loop timer per call: 3.5 µs).
            async with deadline(invocation.timeout_s):
                if self._is_async:
                    return await self._func(event, context)
                call = functools.partial(self._func, event, context)
                if output.current() is not None:
                    # The thread sees the invocation's output capture (runtimes/output.py).
                    call = functools.partial(contextvars.copy_context().run, call)
                return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except TimeoutError as exc:
            raise InvocationTimeout(
                f"{self._function_name} timed out after {invocation.timeout_s:g} s"
            ) from exc
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except BaseException as exc:  # SystemExit from a handler is a handler failure too
            stack = "".join(traceback.format_exception(exc))
            raise InvocationError(type(exc).__name__, str(exc), stack) from exc
