"""The fast WebSocket transport: picows' server protocol on a connection the sniffer accepted.

DESIGN.md "single port, fast fan-out": the listener's sniffer (``server/sniffer.py``) reads a
new connection's request head; an upgrade for a path served here gets its ``$connect`` run
by the front door first, and only then is the connection handed to picows, which answers the
handshake (RFC 6455 §4.2.2) and parses frames in C. Plain HTTP stays with aiohttp. Measured
(DESIGN.md): 7.7 vs 15.5 µs per echo and 3.9 vs 4.6 µs per delivered fan-out message against
aiohttp's fast path.

picows exports only its client and a ``ws_create_server`` that owns the listening socket; its
server protocol class (``picows.picows.WSProtocol``) is built here directly, the one place that
depends on it. picows is pinned to the minor version whose constructor this matches
(pyproject.toml); every e2e test of the websocket API runs through it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSListener,
    WSTransport,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows import picows as _picows

log = logging.getLogger("sockway.websocket")

# picows' read buffer grows on demand; 2 KiB (its minimum) keeps an idle connection small
# (DESIGN.md: 27.9 KB per idle connection with picows' 16 KiB default, 14.0 KB with 1 KiB).
READ_BUFFER_BYTES = 2048
_REASON_MAX_BYTES = 123  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes


class _PicowsLog:
    """The logger picows is given: not a ``logging.Logger``, so picows does not create a child
    logger per connection; its per-connection INFO lines are dropped, a client's protocol
    violation ("WS parser error") is the peer's fault (DEBUG), anything else stays an error."""

    def isEnabledFor(self, level: int) -> bool:
        return False

    def log(self, level: int, msg: str, *args: Any) -> None:
        return None

    def debug(self, msg: str, *args: Any) -> None:
        return None

    def info(self, msg: str, *args: Any) -> None:
        return None

    def warning(self, msg: str, *args: Any) -> None:
        log.warning(msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        log.log(logging.DEBUG if msg.startswith("WS parser error") else logging.ERROR, msg, *args)

    def exception(self, msg: str, *args: Any) -> None:
        log.error(msg, *args, exc_info=True)


_LOG = _PicowsLog()


def start_websocket(
    transport: asyncio.Transport,
    head: bytes,
    listener: WSListener,
    subprotocol: str | None,
    max_frame_bytes: int,
) -> None:
    """Answer the upgrade whose request ``head`` (all bytes read so far) came on ``transport``
    and serve the connection with ``listener`` from now on.

    The caller has decided to accept; picows still validates the key and version
    (RFC 6455 §4.2.1) and answers 400 itself when they are wrong — then ``listener`` never
    sees ``on_ws_connected``. Frames whose payload exceeds ``max_frame_bytes`` close the
    connection with 1009 before the payload is read (apigw spec §6). Pings are answered.
    """
    extra = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
    accepted = WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra), listener)
    protocol = _picows.WSProtocol(  # type: ignore[attr-defined]  # not in picows' stubs
        None,  # host and port: client side only
        None,  # path: client side only
        False,  # server side
        lambda _request: accepted,
        _LOG,
        True,  # disconnect on an exception from the listener
        None,  # handshake timeout: the head is complete already
        False,  # no auto-ping: idle timeouts are the gateway's sweep
        10.0,
        10.0,
        WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # answer pings
        max_frame_bytes,
        None,  # extra headers: client side only
        READ_BUFFER_BYTES,
    )
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    view = memoryview(head)
    while view:
        buffer = protocol.get_buffer(-1)
        n = min(len(buffer), len(view))
        buffer[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]
    if not transport.is_closing():
        transport.resume_reading()


class PicowsSink:
    """``FrameSink`` over a picows connection: pre-built frames go straight to the socket's
    transport, as with aiohttp (one ``write`` per recipient, no await)."""

    __slots__ = ("_abort", "_raw", "_ws", "close_cause")

    def __init__(self, ws: WSTransport) -> None:
        self._ws = ws
        self._raw: asyncio.Transport = ws.underlying_transport
        self._abort: asyncio.TimerHandle | None = None
        self.close_cause: tuple[int, str] | None = None

    def write_frame(self, frame: bytes) -> None:
        self._raw.write(frame)

    def buffered_bytes(self) -> int:
        return int(self._raw.get_write_buffer_size())

    def close(self, code: int, reason: str, timeout_s: float = 2.0) -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); the client's answering close ends
        the connection (``answer_close``). A client that never answers — one that does not
        read, whose outbox is full — is cut off after ``timeout_s``."""
        if self.close_cause is not None:
            return
        self.close_cause = (code, reason)
        if self._ws.is_disconnected:
            return
        self._ws.send_close(WSCloseCode(code), reason.encode()[:_REASON_MAX_BYTES])
        self._abort = asyncio.get_running_loop().call_later(timeout_s, self._raw.abort)

    def answer_close(self) -> None:
        """The client sent a close frame: answer it with 1000 (as aiohttp does; unless ours
        went first) and hang up."""
        if not self._ws.is_close_frame_sent:
            self._ws.send_close(WSCloseCode.OK)
        self._ws.disconnect()

    def ended(self) -> None:
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
