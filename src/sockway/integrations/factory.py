"""Build an ``Integration`` from a handler reference, whatever its form.

Every handler slot (websocket routes and authorizers today; AppSync Events handlers and
Pusher webhooks as those front doors arrive) goes through ``IntegrationFactory.build``, so
each runtime works for every slot.

Forms:
- ``module.function`` — a Python function loaded from the API's ``code_dir`` (in-process).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

from sockway.integrations.base import Integration
from sockway.integrations.python import HandlerLoadError, PythonIntegration, load_handler


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

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"


def check_handler_ref(ref: str, code_dir: Path | None) -> None:
    """Raise ``HandlerLoadError`` with a readable message if ``ref`` cannot be served."""
    load_handler(ref, code_dir)


class IntegrationFactory:
    """Creates integrations; owns what runtimes share (the handler thread pool)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def build(self, spec: FunctionSpec) -> Integration:
        func = load_handler(spec.ref, spec.code_dir)
        return PythonIntegration(
            func=func,
            function_name=spec.function_name,
            function_arn=spec.function_arn,
            memory_limit_in_mb=spec.memory_mb,
            executor=self.executor,
        )


__all__ = ["FunctionSpec", "HandlerLoadError", "IntegrationFactory", "check_handler_ref"]
