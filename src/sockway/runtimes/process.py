"""The process runtime (``runtime: process``): each function in worker processes of its own.

Contract, modelled on a Lambda function (README "Handler runtimes"):

- Isolation: a function's workers get their own environment (``function_environment``), working
  directory and ``sys.path`` (``code_dir`` first) and never share an interpreter with the gateway
  or another function. The handler module is never imported into the gateway.
- Warm reuse: a worker serves one invocation at a time and is kept for the next one. A cold
  start (spawn + import of the handler, Lambda's init phase) is measured and reported as
  ``Init Duration``; the init phase is bounded by ``INIT_TIMEOUT_S`` (Lambda: 10 s).
- ``timeout_s`` (the invocation's deadline) is enforced by killing the worker: the caller gets
  ``InvocationTimeout``, as for a Lambda timeout, and the next invocation gets a fresh worker.
- ``memory_mb`` is enforced in the worker with ``RLIMIT_DATA`` (``runtimes.worker_main``);
  exceeding it gives ``InvocationError("Runtime.OutOfMemory")`` and a fresh worker next time.
- Exit, ``os._exit``, a signal (segfault) → ``InvocationError("Runtime.ExitError")`` with
  Lambda's message (``RequestId: … Error: Runtime exited with error: exit status 3``). Nothing a
  worker does reaches the gateway or another function.
- ``reserved_concurrency``: invocations running at once; over it the call fails at once with
  ``TooManyRequestsException`` / ``Rate Exceeded.`` (Lambda's throttle). Without it a function
  may run ``DEFAULT_MAX_CONCURRENCY`` invocations at once (Lambda's account limit analogue).
- Logs: the handler's output is logged on ``sockway.function`` as ``[function] [requestId]
  line``, framed by ``START``/``END``/``REPORT`` lines written as Lambda writes them.
- ``reload()`` (``sockway serve --reload``): idle workers end now, busy ones after their
  invocation; the next invocation starts a worker that imports the edited code.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.machinery
import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sockway
from sockway.runtimes import output
from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout
from sockway.runtimes.deadlines import deadline
from sockway.runtimes.environment import metadata_default
from sockway.runtimes.inprocess import HandlerLoadError, split_handler_ref
from sockway.runtimes.reload import CodeWatcher
from sockway.runtimes.worker import InitFailed, Worker, WorkerExited

if TYPE_CHECKING:
    from sockway.runtimes.factory import FunctionSpec

log = logging.getLogger("sockway.function")
gateway_log = logging.getLogger("sockway")

INIT_TIMEOUT_S = 10.0  # Lambda's limit on the init phase of an on-demand function
DEFAULT_MAX_CONCURRENCY = 32  # per function without reserved_concurrency: bounds worker count
DEFAULT_TIMEOUT_S = 3.0  # Lambda's default function timeout (only used for the env/context)


def check_process_handler_ref(ref: str, code_dir: Path | None) -> None:
    """Check that ``ref``'s module exists, without importing it into the gateway.

    A missing function is reported by the worker at its first init (``Runtime.HandlerNotFound``),
    as Lambda does.
    """
    module_name, _ = split_handler_ref(ref)
    top = module_name.split(".")[0]
    if code_dir is not None and importlib.machinery.PathFinder.find_spec(top, [str(code_dir)]):
        return
    try:
        if importlib.util.find_spec(top) is not None:
            return
    except (ImportError, ValueError):
        pass
    where = f" in {code_dir}" if code_dir is not None else ""
    raise HandlerLoadError(f"module '{module_name}' not found{where}")


def lambda_variables(spec: FunctionSpec) -> dict[str, str]:
    """The reserved variables Lambda sets in every execution environment."""
    name = spec.function_name
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]sockway", time.gmtime()),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info[0]}.{sys.version_info[1]}",
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "LAMBDA_TASK_ROOT": str(spec.code_dir or os.getcwd()),
        "_HANDLER": spec.ref,
        "TZ": ":UTC",
    }


def function_environment(
    spec: FunctionSpec, base: Mapping[str, str], foreign_keys: set[str]
) -> dict[str, str]:
    """A worker's environment: the gateway's own environment without any API's ``environment``
    keys (those belong to their functions), then Lambda's variables, then this function's
    ``environment``. ``PYTHONPATH`` gains the directory sockway itself is imported from.
    ``AWS_EC2_METADATA_DISABLED`` is ``true`` unless set there or on EC2
    (``runtimes.environment.metadata_default``)."""
    env = {k: v for k, v in base.items() if k not in foreign_keys}
    env.update(lambda_variables(spec))
    env.update(spec.environment)
    metadata_default(env)
    own = str(Path(sockway.__file__).resolve().parents[1])
    paths = [own, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != own]]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class ProcessIntegration:
    """One function served by a pool of worker processes (see the module docstring)."""

    def __init__(self, spec: FunctionSpec, pools: WorkerPools) -> None:
        self._spec = spec
        self._pools = pools
        self._limit = (
            spec.reserved_concurrency
            if spec.reserved_concurrency is not None
            else DEFAULT_MAX_CONCURRENCY
        )
        self._inflight = 0
        self._idle: list[Worker] = []
        self._workers: set[Worker] = set()
        self._generation = 0
        self._closed = False
        self._reaping: set[asyncio.Task[None]] = set()
        self._arn = spec.function_arn

    @property
    def function_name(self) -> str:
        return self._spec.function_name

    async def invoke(self, event: dict[str, Any], invocation: Invocation) -> Any:
        if self._closed:
            raise InvocationError("ServiceException", f"{self.function_name} is shut down")
        if self._inflight >= self._limit:
            raise InvocationError("TooManyRequestsException", "Rate Exceeded.")
        # One coroutine per invocation (no inner one for the body): this path runs per
        # message of a two-way route (bench/RESULTS.md, "runtime: process").
        self._inflight += 1
        rid = invocation.request_id
        try:
            worker = self._warm()
            cold = worker is None
            if worker is None:
                worker = await self._start(rid)
            logged = log.isEnabledFor(logging.INFO)
            if logged:
                self._log(None, f"START RequestId: {rid} Version: $LATEST")
            worker.request_id = rid
            request = {
                "requestId": rid,
                "event": event,
                "timeoutMs": int(invocation.timeout_s * 1000),
                "arn": self._arn,
                # the peak memory is read (a /proc read in the worker) only for REPORT
                "reportMemory": logged,
            }
            started = time.monotonic()
            status = ""
            try:
                # A deadline on the loop's wheel, not wait_for: no Task nor timer per
                # invocation (as the in-process runtime; bench/ANALYSIS.md "process runtime").
                async with deadline(invocation.timeout_s):
                    reply = await worker.call(request)
            except TimeoutError:
                worker.kill()
                status = "Status: timeout"
                self._log(rid, f"Task timed out after {invocation.timeout_s:.2f} seconds")
                raise InvocationTimeout(
                    f"{self.function_name} timed out after {invocation.timeout_s:g} s"
                ) from None
            except WorkerExited as exc:
                status = f"Status: error\tError Type: {exc.error_type}"
                if exc.error_type == "Runtime.OutOfMemory":
                    worker.max_memory_mb = max(worker.max_memory_mb, self._spec.memory_mb)
                raise InvocationError(
                    exc.error_type, f"RequestId: {rid} Error: {exc.reason}"
                ) from None
            except BaseException:
                worker.kill()  # cancelled mid-invocation: the worker's state is unknown
                status = "Status: error"
                raise
            finally:
                duration_ms = (time.monotonic() - started) * 1000
                if status:
                    await worker.output_closed()  # the rest of its output, bounded
                else:
                    worker.end_of_answer()  # answered: its output is all in
                if logged:
                    self._report(worker, rid, duration_ms, cold, status)
                self._release(worker, keep=worker.alive and not status)
        finally:
            self._inflight -= 1
        if reply.get("type") == "error":
            raise InvocationError(
                str(reply.get("errorType")),
                str(reply.get("errorMessage")),
                "".join(reply.get("stackTrace") or []),
            )
        return reply.get("payload")

    def _warm(self) -> Worker | None:
        """An idle worker of this generation (the one used last: its memory is the likeliest
        still in the CPU's caches), or ``None``."""
        while self._idle:
            worker = self._idle.pop()
            if worker.alive and worker.generation == self._generation:
                return worker
            self._retire(worker)
        return None

    async def _start(self, rid: str) -> Worker:
        """A new worker, through its init phase (a cold start)."""
        try:
            worker = await self._spawn()
        except OSError as exc:  # no processes or file descriptors left: Lambda's service error
            gateway_log.error("cannot start a worker for %s: %s", self.function_name, exc)
            raise InvocationError("ServiceException", f"cannot start a worker: {exc}") from exc
        self._workers.add(worker)
        try:
            await asyncio.wait_for(worker.wait_ready(), INIT_TIMEOUT_S)
        except BaseException as exc:
            self._retire(worker)
            if isinstance(exc, InitFailed):
                self._log(rid, f"[ERROR] {exc.error_type}: {exc.message}")
                raise InvocationError(exc.error_type, exc.message, exc.stack) from None
            if isinstance(exc, WorkerExited):
                raise InvocationError(
                    exc.error_type, f"RequestId: {rid} Error: {exc.reason}"
                ) from None
            if isinstance(exc, TimeoutError):
                raise InvocationError(
                    "Runtime.InitError", f"Init phase timed out after {INIT_TIMEOUT_S:g} s"
                ) from None
            raise
        return worker

    async def _spawn(self) -> Worker:
        """Start one worker of this function (the Node.js runtime starts its own kind)."""
        return await Worker.spawn(
            code_dir=self._spec.code_dir,
            ref=self._spec.ref,
            memory_mb=self._spec.memory_mb,
            fresh_source=self._pools.reload,
            env=self._pools.environment(self._spec),
            generation=self._generation,
            log_line=self._log,
        )

    def _release(self, worker: Worker, *, keep: bool) -> None:
        worker.request_id = None
        if keep and not self._closed and worker.generation == self._generation:
            self._idle.append(worker)
        else:
            self._retire(worker)

    def _retire(self, worker: Worker) -> None:
        self._workers.discard(worker)
        task = asyncio.get_running_loop().create_task(worker.reap())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    def _log(self, request_id: str | None, line: str) -> None:
        if request_id is None:
            log.info("[%s] %s", self.function_name, line)
        else:
            output.record(request_id, line)  # the console's view of this invocation
            log.info("[%s] [%s] %s", self.function_name, request_id, line)

    def _report(
        self, worker: Worker, rid: str, duration_ms: float, cold: bool, status: str
    ) -> None:
        """END and REPORT (built only when INFO is logged: two lines per invocation)."""
        self._log(None, f"END RequestId: {rid}")
        parts = [
            f"REPORT RequestId: {rid}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {self._spec.memory_mb} MB",
            f"Max Memory Used: {worker.max_memory_mb} MB",
        ]
        if cold:
            parts.append(f"Init Duration: {worker.init_ms:.2f} ms")
        if status:
            parts.append(status)
        self._log(None, "\t".join(parts))

    def reload(self) -> None:
        """Start new workers from now on (idle ones end now, busy ones when they finish)."""
        self._generation += 1
        for worker in self._idle:
            self._retire(worker)
        self._idle.clear()
        gateway_log.info("reloading %s: its code changed", self.function_name)

    async def aclose(self) -> None:
        self._closed = True
        for worker in [*self._idle, *self._workers]:
            self._retire(worker)
        self._idle.clear()
        if self._reaping:
            await asyncio.wait(set(self._reaping))


class WorkerPools:
    """The process runtime's shared state: every function's pool and the code watcher."""

    def __init__(self, *, reload: bool) -> None:
        self._integrations: list[ProcessIntegration] = []
        self._environment_keys: set[str] = set()
        self._watcher = CodeWatcher() if reload else None
        self._watch_task: asyncio.Task[None] | None = None

    @property
    def reload(self) -> bool:
        return self._watcher is not None

    def note_environment(self, environment: Mapping[str, str]) -> None:
        """Remember an API's variable names: other functions' workers must not inherit them."""
        self._environment_keys.update(environment)

    def environment(self, spec: FunctionSpec) -> dict[str, str]:
        return function_environment(spec, os.environ, self._environment_keys)

    def build(self, spec: FunctionSpec) -> ProcessIntegration:
        return self.add(spec, ProcessIntegration(spec, self))

    def add(self, spec: FunctionSpec, integration: ProcessIntegration) -> ProcessIntegration:
        """Own ``integration`` (of any worker kind): stopped at ``aclose``, reloaded when its
        ``code_dir`` changes under ``--reload``."""
        self.note_environment(spec.environment)
        self._integrations.append(integration)
        if self._watcher is not None and spec.code_dir is not None:
            self._watcher.watch(spec.code_dir, integration.reload)
            if self._watch_task is None:
                with contextlib.suppress(RuntimeError):  # no loop: nothing to reload
                    loop = asyncio.get_running_loop()
                    self._watch_task = loop.create_task(self._watcher.run())
        return integration

    async def aclose(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for integration in self._integrations:
            await integration.aclose()
