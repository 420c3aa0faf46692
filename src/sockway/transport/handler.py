"""What a front door and a WebSocket transport agree on, whichever transport serves the
connection (picows, ``transport/picows_ws.py``, or aiohttp, ``transport/aiohttp_ws.py``): the
``MessageHandler`` a door gives for one connection, the ``Sink`` it writes to, and the RFC 6455
close codes, reasons and version check both transports apply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

DRAIN_POLL_S = 0.05
CLOSE_TIMEOUT_S = 2.0  # how long a server-initiated close may wait for the client's answer

# RFC 6455 §7.4.1 close codes this transport closes with, and their reasons [our wording].
CLOSE_PROTOCOL_ERROR, REASON_PROTOCOL_ERROR = 1002, "Protocol error"
CLOSE_INVALID_TEXT, REASON_INVALID_TEXT = 1007, "Invalid UTF-8 text"
CLOSE_TOO_BIG, REASON_MESSAGE_TOO_BIG = 1009, "Message too big"
REASON_FRAME_TOO_BIG = "Frame too big"  # a single frame over the frame limit (also 1009)
WEBSOCKET_VERSION = "13"  # RFC 6455 §4.1: the only version this server speaks


def valid_close_code(code: int) -> bool:
    """Whether a client may send ``code`` in a close frame (RFC 6455 §7.4.1-§7.4.2).

    1000-1003 and 1007-1011 are defined by the RFC, 1012-1014 registered with IANA since;
    3000-4999 belong to libraries and applications. 1004-1006 and 1015 are reserved (1005 and
    1006 must never be sent), 0-999 unused, 5000 and above undefined: a close frame carrying
    one of those is a protocol error (1002).
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def version_supported(version: str | None) -> bool:
    """RFC 6455 §4.2.1: ``Sec-WebSocket-Version`` must be 13; otherwise the handshake is
    answered 426 with the version we speak (``refuse_version``)."""
    return version is not None and version.strip() == WEBSOCKET_VERSION


VERSION_REFUSAL_STATUS = 426
VERSION_REFUSAL_HEADERS = {"Sec-WebSocket-Version": WEBSOCKET_VERSION}
VERSION_REFUSAL_BODY = {"message": "Unsupported WebSocket version: use Sec-WebSocket-Version 13"}


class Sink(Protocol):
    """The sink a ``MessageHandler`` gets: ``PicowsSink`` or ``aiohttp_ws.AiohttpSink``."""

    close_cause: tuple[int, str] | None  # set by ``close``: the code and reason we closed with

    def write_frame(self, frame: bytes) -> None: ...

    def buffered_bytes(self) -> int: ...

    def close(self, code: int, reason: str) -> None: ...

    def cut(self, code: int, reason: str) -> None: ...


Hold = Callable[["asyncio.Future[Any]"], None]


class MessageHandler(Protocol):
    """What a front door does with one WebSocket connection, on either transport
    (``PicowsConnection`` here, ``aiohttp_ws.serve_aiohttp`` for aiohttp)."""

    def opened(self, sink: Sink, hold: Hold) -> None:
        """The handshake is answered; frames go out through ``sink`` from now on.
        ``hold(future)`` keeps every message back until ``future`` is done."""

    def message(self, data: str | bytes) -> asyncio.Future[Any] | None:
        """A complete message: text as ``str``, binary as ``bytes``. A returned future holds
        its slot of the in-flight window until it is done; None frees the slot at once."""

    def client_closed(self, code: int, reason: str) -> None:
        """The client's close frame (1005 when it carried no code); the answer is sent."""

    def closed(self, failure: tuple[int, str] | None) -> None:
        """The connection is gone. ``failure``: the transport closed it for the client's
        protocol violation (1009 "Frame too big" or "Message too big", 1002, ...), unless
        the sink's ``close`` went first."""


async def until_closed(open_count: Any) -> None:
    """Wait until ``open_count()`` is 0 (polled: used only while the gateway drains)."""
    while open_count():
        await asyncio.sleep(DRAIN_POLL_S)
