"""The first protocol of every accepted connection: WebSocket upgrades to the fast transport,
everything else to aiohttp (DESIGN.md "single port, fast fan-out").

``Sniffer`` reads the connection's first request head. A ``GET`` that asks to upgrade to
``websocket`` on a path with a registered ``UpgradeHandler`` (a websocket API's stage, an
events API's realtime path; a key ending in ``/`` serves every path one non-empty segment
below it, as ``/app/`` serves Pusher's ``/app/{key}``) is handed to that handler with the
transport paused (after the one check every door shares: ``Sec-WebSocket-Version`` 13, else
426): the handler runs what must precede the handshake (``$connect``) and either
answers the HTTP refusal itself or gives the connection to picows
(``transport/picows_ws.py``). Any other first request — plain HTTP, a path nobody registered, a
malformed head, one over ``HEAD_MAX_BYTES`` — goes to aiohttp's protocol with every byte read
so far, so aiohttp serves it (and answers errors) exactly as if it had been there from the
start. Later requests on a keep-alive connection never pass here: after the hand-off the
sniffer is out of the path, so plain HTTP costs one extra object per connection, nothing per
request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol, cast

from sockway.transport.frame_guard import FrameGuard
from sockway.transport.handler import (
    VERSION_REFUSAL_BODY,
    VERSION_REFUSAL_HEADERS,
    VERSION_REFUSAL_STATUS,
    version_supported,
)
from sockway.transport.picows_ws import refuse_upgrade
from sockway.transport.upgrade_head import (
    HEAD_MAX_BYTES,
    BadHead,
    RequestHead,
    head_end,
    parse_head,
)

log = logging.getLogger("sockway.listener")

HEAD_TIMEOUT_S = 30.0  # a connection that has not sent a whole request head by then is closed
_GET = b"GET "


class UpgradeHandler(Protocol):
    def __call__(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        """Take over ``transport`` (reading paused) for the upgrade ``head``; ``raw`` is every
        byte read from the connection so far."""


class Sniffer(asyncio.Protocol):
    __slots__ = ("_buffer", "_fallback", "_handlers", "_timer", "_transport")

    def __init__(
        self,
        fallback: Callable[[], asyncio.Protocol],
        handlers: Mapping[str, UpgradeHandler],
    ) -> None:
        self._fallback = fallback
        self._handlers = handlers
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self._transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not buffer.startswith(_GET[: len(buffer)]):
            self._to_aiohttp(buffer)  # not a GET: never an upgrade
            return
        end = head_end(buffer)
        if end < 0:
            if len(buffer) > HEAD_MAX_BYTES:
                self._to_aiohttp(buffer)
            else:
                self._buffer = buffer
            return
        try:
            head = parse_head(buffer[:end])
        except BadHead:
            self._to_aiohttp(buffer)  # aiohttp answers it as it always has
            return
        path = head.path
        handler = self._handlers.get(path)
        if handler is None:
            parent = path[: path.rfind("/") + 1]  # "/app/" serves "/app/{key}"
            handler = self._handlers.get(parent) if len(parent) < len(path) else None
        if handler is None or not head.is_websocket_upgrade():
            self._to_aiohttp(buffer)
            return
        transport = self._transport
        assert transport is not None
        self._stop_timer()
        self._buffer = b""
        if not version_supported(head.header("sec-websocket-version")):
            # RFC 6455 §4.2.2: 426 naming the version we speak, before any door's $connect.
            refuse_upgrade(
                transport, VERSION_REFUSAL_STATUS, VERSION_REFUSAL_BODY, VERSION_REFUSAL_HEADERS
            )
            return
        transport.pause_reading()
        handler(transport, head, buffer)

    def eof_received(self) -> bool | None:
        return None  # closes the transport: the client left before finishing its head

    def _to_aiohttp(self, buffer: bytes) -> None:
        transport = self._transport
        assert transport is not None
        self._stop_timer()
        self._buffer = b""
        protocol = FrameGuard(self._fallback())
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(buffer)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
