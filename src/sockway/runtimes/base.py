"""The integration interface every handler runtime implements.

An integration takes a Lambda-style event and returns the handler's result, or raises
``InvocationError`` (the handler failed, as Lambda reports ``FunctionError``) or
``InvocationTimeout`` (no answer within the deadline). Callers translate those into the
client-visible answer at one boundary (DESIGN habit 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class InvocationError(Exception):
    """The handler raised or crashed; ``error_type``/``error_message`` as Lambda reports them."""

    def __init__(self, error_type: str, error_message: str, stack: str = "") -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message
        self.stack = stack


class InvocationTimeout(Exception):
    """The handler did not return within its timeout."""


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a runtime needs besides the event."""

    request_id: str
    timeout_s: float


class Integration(Protocol):
    """One callable handler (a route, an authorizer, ...)."""

    @property
    def function_name(self) -> str: ...

    async def invoke(self, event: dict[str, Any], invocation: Invocation) -> Any:
        """Run the handler once; raise ``InvocationError`` / ``InvocationTimeout`` on failure."""
        ...
