"""Build an ``Integration`` from a handler reference, whatever its form.

Every handler slot (websocket routes and authorizers today; AppSync Events handlers and
Pusher webhooks as those front doors arrive) goes through ``IntegrationFactory.build``, so
each runtime works for every slot.

Forms:
- ``module.function`` — a Python function loaded from the API's ``code_dir`` (in-process).
- ``module.function`` with ``runtime: process`` — the same function run in isolated worker
  processes of its own (``integrations.process``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from sockway.integrations.base import Integration
from sockway.integrations.process import WorkerPools, check_process_handler_ref
from sockway.integrations.python import HandlerLoadError, PythonIntegration, load_handler

log = logging.getLogger("sockway")


@dataclass(frozen=True)
class FunctionSpec:
    """Everything a runtime may need to know about one handler."""

    ref: str
    function_name: str
    code_dir: Path | None = None
    region: str = "us-east-1"
    account_id: str = "123456789012"
    memory_mb: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)
    runtime: str = "inprocess"  # "inprocess" | "process" (config.models.Runtime)
    timeout_s: float | None = None  # as configured; each Invocation carries its deadline
    reserved_concurrency: int | None = None  # process runtime: over it → throttled

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"


def check_handler_ref(ref: str, code_dir: Path | None, runtime: str = "inprocess") -> None:
    """Raise ``HandlerLoadError`` with a readable message if ``ref`` cannot be served."""
    if runtime == "process":
        check_process_handler_ref(ref, code_dir)  # never imported into the gateway
        return
    load_handler(ref, code_dir)


class IntegrationFactory:
    """Creates integrations; owns what runtimes share (the handler thread pool)."""

    def __init__(self, executor: Executor, *, reload: bool = False) -> None:
        self.executor = executor
        self.workers = WorkerPools(reload=reload)

    async def aclose(self) -> None:
        """Stop what runtimes keep running (worker processes, the code watcher)."""
        await self.workers.aclose()

    def build(self, spec: FunctionSpec) -> Integration:
        if spec.runtime == "process":
            return self.workers.build(spec)
        self.workers.note_environment(spec.environment)
        if self.workers.reload:
            log.warning(
                "--reload does not apply to in-process handler %s (set runtime: process)",
                spec.function_name,
            )
        func = load_handler(spec.ref, spec.code_dir)
        return PythonIntegration(
            func=func,
            function_name=spec.function_name,
            function_arn=spec.function_arn,
            memory_limit_in_mb=spec.memory_mb,
            executor=self.executor,
        )


__all__ = ["FunctionSpec", "HandlerLoadError", "IntegrationFactory", "check_handler_ref"]
