"""What the events runtime (``events/runtime.py``) works with: one subscription, where an
operation came from, a namespace's handlers, and the per-channel order of publications
(appsync-events spec §4)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from sockway.core.channels import ChannelPath
from sockway.core.connection import Connection
from sockway.events.settings import HandlerSpec
from sockway.runtimes.base import Integration


@dataclass(frozen=True, slots=True)
class Handler:
    integration: Integration
    spec: HandlerSpec
    timeout_s: float


@dataclass(frozen=True, slots=True)
class NamespaceHandlers:
    on_publish: Handler | None = None
    on_subscribe: Handler | None = None


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscription id of one connection; ``frame_head`` is its data frame's prefix."""

    conn: Connection
    id: str
    channel: ChannelPath
    frame_head: bytes


@dataclass(frozen=True, slots=True)
class Operation:
    """Where a subscribe / publish came from, for authorization and the handler's ``request``."""

    auth_headers: Mapping[str, str]  # lower-case
    request_headers: Mapping[str, str]  # lower-case; what handlers see
    signed_body: bytes
    source_ip: str


class ChannelSequencer:
    """Keeps publications to one channel in arrival order (spec §4, DESIGN: fan-out order).

    ``enter`` is called before the first await of a publication; ``wait_turn`` returns once every
    earlier publication of the channel has been delivered or has failed; ``leave`` always runs.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def enter(self, path: str) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        previous = self._tails.get(path)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[path] = mine
        return previous, mine

    @staticmethod
    async def wait_turn(previous: asyncio.Future[None] | None) -> None:
        if previous is not None:
            await asyncio.shield(previous)

    def leave(self, path: str, mine: asyncio.Future[None]) -> None:
        if not mine.done():
            mine.set_result(None)
        if self._tails.get(path) is mine:
            del self._tails[path]


# The WebSocket operation being handled on this task, (connection id, operation id): its
# handler invocations are linked to it in the console (``RealtimeEndpoint.dispatch`` sets it).
current_operation: ContextVar[tuple[str, str] | None] = ContextVar(
    "sockway_events_operation", default=None
)
