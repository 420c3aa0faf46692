"""What every API type (front door) provides to the gateway, and what the gateway gives it.

A front door is built from its settings and a ``GatewayContext``; it adds its HTTP/WebSocket
routes to the shared aiohttp application, learns where it is reachable once the listeners are
bound (``bind``), closes idle connections when swept, and exposes the tasks the gateway must
wait for when draining. A front door may also serve its WebSocket upgrades itself, off
aiohttp (``upgrades``). Register a new API type in ``gateway/registry.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from sockway.core.node import Node
from sockway.frontdoor.cluster import Cluster
from sockway.observability.metrics import Metrics
from sockway.observability.tap import Tap
from sockway.runtimes.factory import IntegrationFactory
from sockway.transport.sniffer import UpgradeHandler


@dataclass(frozen=True)
class ListenInfo:
    """Where the gateway listens, as clients should write it."""

    public_host: str  # "127.0.0.1", "localhost" for 0.0.0.0, "[::1]" for IPv6
    plain_port: int
    tls_port: int | None  # None without TLS; equal to plain_port when TLS shares the port


@dataclass(frozen=True)
class Endpoint:
    """Where clients reach one API: labelled URLs for the start-up banner."""

    api: str
    urls: tuple[tuple[str, str], ...]
    try_hint: tuple[str, ...] = ()  # lines telling a newcomer how to try it (demo banner)

    def url(self, label: str) -> str:
        return dict(self.urls)[label]


@dataclass(frozen=True)
class GatewayContext:
    node: Node
    cluster: Cluster
    metrics: Metrics
    new_id: Callable[[], str]
    integrations: IntegrationFactory
    tap: Tap  # report activity here (access log, console); see observability/tap.py


class FrontDoor(Protocol):
    @property
    def name(self) -> str: ...

    def add_routes(self, app: web.Application) -> None: ...

    def upgrades(self) -> Mapping[str, UpgradeHandler]:
        """Paths whose WebSocket upgrades bypass aiohttp when they open a connection
        (``transport/sniffer.py``); the front door then serves them on its own transport."""

    def bind(self, listen: ListenInfo) -> Endpoint: ...

    def sweep(self, now_ms: int) -> None: ...

    def drain(self) -> None:
        """Refuse new connections from now on."""

    def pending_work(self) -> set[asyncio.Future[Any]]:
        """Sessions and handler invocations the gateway waits for when draining."""


@runtime_checkable
class Operable(Protocol):
    """What a front door lets an operator do by hand (the live console's actions).

    Sending to and disconnecting a connection are door-agnostic (``core.Node``); publishing is
    not: each door frames a publication its own way, so a door that can publish says how.
    """

    def publish_text(self, channel: str, data: str, event: str | None) -> Awaitable[int]:
        """Publish ``data`` to ``channel`` as this door's clients expect it (``event``: the
        Pusher event name; ignored elsewhere). Returns the local deliveries; raises
        ``ValueError`` with a message for a channel or payload the door refuses, and
        ``BrokerUnavailable`` when it was not published (nobody got it: docs/brokers.md)."""
        ...

    def connection_details(self, connection_id: str) -> dict[str, Any]:
        """What this door knows of a connection beyond ``core.Connection`` (subscriptions,
        presence membership, signed-in user), JSON-ready; ``{}`` when nothing."""
        ...
