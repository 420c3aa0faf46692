"""The fast WebSocket transport: picows' server protocol on a connection the sniffer accepted.

DESIGN.md "single port, fast fan-out": the listener's sniffer (``transport/sniffer.py``) reads a
new connection's request head; an upgrade for a path served here gets what must precede the
handshake run by its front door (the websocket API's ``$connect``), and only then is the
connection handed to picows, which answers the handshake (RFC 6455 §4.2.2) and parses frames
in C. Plain HTTP stays with aiohttp. Measured same-run against aiohttp (bench/ANALYSIS.md "The
transport switch"): 14.9 → 9.0 KB per idle connection, 44.6 → 38.4 µs per two-way request,
324 → 251 µs per new connection.

picows exports only its client and a ``ws_create_server`` that owns the listening socket; its
server protocol class (``picows.picows.WSProtocol``) is built here directly, the one place that
depends on it. picows is pinned to the minor version whose constructor this matches
(pyproject.toml); the e2e tests of all three front doors run through it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from http import HTTPStatus
from typing import Any

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows import picows as _picows

from sockway.transport.handler import (
    CLOSE_INVALID_TEXT,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TIMEOUT_S,
    CLOSE_TOO_BIG,
    REASON_FRAME_TOO_BIG,
    REASON_INVALID_TEXT,
    REASON_MESSAGE_TOO_BIG,
    REASON_PROTOCOL_ERROR,
    MessageHandler,
    valid_close_code,
)

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
    connection with 1009 before the payload is read (apigw spec §6). Pings are answered by
    ``PicowsConnection`` (picows' own answer would skip the RSV check).
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
        False,  # pings are answered by PicowsConnection, after the RSV check (RFC 6455 §5.2)
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


def refuse_upgrade(
    transport: asyncio.Transport,
    status: int,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer an upgrade the sniffer handed over with an HTTP refusal (a JSON ``body``, or
    none, and any extra ``headers``) and close the connection, as aiohttp answers a refused
    upgrade."""
    payload = b"" if body is None else json.dumps(body).encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    kind = "application/json; charset=utf-8" if body is not None else "text/plain"
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nContent-Type: {kind}\r\n{extra}"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    transport.write(head.encode("latin-1") + payload)
    transport.close()


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
        """Queue ``frame``; nothing when the transport is already closed — the peer reset
        the connection and its end (``on_ws_disconnected``) has not run yet — where uvloop
        raises ``RuntimeError`` (issue 13: it aborted fan-outs at that member)."""
        try:
            self._raw.write(frame)
        except RuntimeError:
            if not self._raw.is_closing():
                raise

    def buffered_bytes(self) -> int:
        return int(self._raw.get_write_buffer_size())

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (RFC 6455 §7.1.2); the client's answering close ends
        the connection (``answer_close``). A client that never answers — one that does not
        read, whose outbox is full — is cut off after ``CLOSE_TIMEOUT_S``."""
        if self.close_cause is not None:
            return
        self.close_cause = (code, reason)
        if self._ws.is_disconnected or self._raw.is_closing():
            return
        self._ws.send_close(WSCloseCode(code), reason.encode()[:_REASON_MAX_BYTES])
        self._abort = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._raw.abort)

    def pong(self, payload: bytes) -> None:
        """Answer a client's ping with its payload (RFC 6455 §5.5.3)."""
        if not self._ws.is_close_frame_sent:
            self._ws.send_pong(payload)

    def cut(self, code: int, reason: str) -> None:
        """Drop the connection now (``FrameSink.cut``), also during a close under way."""
        if self.close_cause is None:
            self.close_cause = (code, reason)
        self.ended()
        if not self._raw.is_closing():
            self._raw.abort()

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


class PicowsConnection(WSListener):
    """picows' listener for one connection: frames in, messages to a ``MessageHandler``.

    - picows delivers frames; fragmented messages are reassembled here, up to
      ``max_message_bytes`` (over it: close 1009). Text that is not UTF-8 closes with 1007
      (RFC 6455 §8.1). Closed with 1002 (§5.2, §5.4, §7.4): a frame with RSV1-3 set (no
      extension is negotiated), a continuation without a first frame, a new data frame inside
      a fragmented message, a close frame with a code a client may not send. picows itself
      refuses unmasked frames, reserved opcodes and fragmented or oversize control frames.
    - At most ``window`` messages are in flight (``handler.message`` futures not done). picows
      hands over every frame of one read at once, so what comes beyond the window waits here,
      in order, and reading pauses until a slot frees: the backlog holds at most one read.
      ``gate(future)`` holds every message until ``future`` is done (a connect authorization).
    - Once a close frame was sent, data frames are dropped (as aiohttp's ``close()`` did);
      this also covers picows 2.3 delivering a frame whose oversize header it refused.
    """

    __slots__ = (
        "_backlog",
        "_binary",
        "_free",
        "_gated",
        "_handler",
        "_max_message_bytes",
        "_parts",
        "_paused",
        "_tasks",
        "_transport",
        "sink",
    )

    def __init__(
        self,
        handler: MessageHandler,
        window: int,
        max_message_bytes: int,
        tasks: set[Any] | None = None,
    ) -> None:
        self._handler = handler
        self._free = window
        self._max_message_bytes = max_message_bytes
        self._tasks = tasks  # futures the front door drains on stop: discarded when done
        self._parts: bytearray | None = None  # a fragmented message being received
        self._binary = False  # ... and whether it is binary
        self._backlog: deque[str | bytes] | None = None
        self._gated = False
        self._paused = False
        self._transport: asyncio.Transport | None = None
        self.sink: PicowsSink | None = None

    # -- picows callbacks -----------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport.underlying_transport
        self.sink = PicowsSink(transport)
        self._handler.opened(self.sink, self.gate)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if transport.is_close_frame_sent and kind != WSMsgType.CLOSE:
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:  # no extension negotiated (§5.2)
            self._close(CLOSE_PROTOCOL_ERROR, REASON_PROTOCOL_ERROR)
            return
        if kind == WSMsgType.TEXT and frame.fin and self._parts is None:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._close(CLOSE_INVALID_TEXT, REASON_INVALID_TEXT)
                return
            self._offer(text)
            return
        self._other_frame(kind, frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        sink = self.sink
        if sink is None:
            return
        sink.ended()
        self._backlog = None
        failure = None
        handshake = transport.close_handshake
        sent = handshake.sent if handshake is not None else None
        if sent is not None and not handshake.recv_then_sent and sink.close_cause is None:
            # picows closed first: a frame header over the frame limit (1009) or another
            # protocol violation
            code = sent.code.value
            failure = (code, REASON_FRAME_TOO_BIG if code == CLOSE_TOO_BIG else sent.reason)
        self._handler.closed(failure)

    # -- frames ---------------------------------------------------------------------------

    def _other_frame(self, kind: WSMsgType, frame: WSFrame) -> None:
        if kind == WSMsgType.CLOSE:
            if frame.payload_size == 0:
                code = 1005  # no code (picows reports 0 for both "none" and a 0 on the wire)
            else:
                code = frame.get_close_code().value
                if not valid_close_code(code):
                    self._close(CLOSE_PROTOCOL_ERROR, REASON_PROTOCOL_ERROR)
                    return
            self._handler.client_closed(code, frame.get_close_reason() or "")
            assert self.sink is not None
            self.sink.answer_close()
            return
        if kind == WSMsgType.PING:
            assert self.sink is not None
            self.sink.pong(frame.get_payload_as_bytes())
            return
        if kind == WSMsgType.PONG:
            return
        if kind == WSMsgType.CONTINUATION:
            if self._parts is None:
                self._close(CLOSE_PROTOCOL_ERROR, REASON_PROTOCOL_ERROR)
                return
        elif self._parts is not None:  # a new message before the fragmented one ended (§5.4)
            self._parts = None
            self._close(CLOSE_PROTOCOL_ERROR, REASON_PROTOCOL_ERROR)
            return
        else:  # the first frame of a message
            self._parts, self._binary = bytearray(), kind == WSMsgType.BINARY
        self._parts += frame.get_payload_as_memoryview()
        if len(self._parts) > self._max_message_bytes:
            self._parts = None
            self._close(CLOSE_TOO_BIG, REASON_MESSAGE_TOO_BIG)
            return
        if not frame.fin:
            return
        parts, self._parts = self._parts, None
        if self._binary:
            self._offer(bytes(parts))
            return
        try:
            text = parts.decode()
        except UnicodeDecodeError:
            self._close(CLOSE_INVALID_TEXT, REASON_INVALID_TEXT)
            return
        self._offer(text)

    def _close(self, code: int, reason: str) -> None:
        assert self.sink is not None
        self.sink.close(code, reason)

    # -- the in-flight window -------------------------------------------------------------

    def _offer(self, data: str | bytes) -> None:
        if self._free > 0 and not self._gated and not self._backlog:
            self._run(data)
            if self._free > 0:
                return
        else:
            if self._backlog is None:
                self._backlog = deque()
            self._backlog.append(data)
        self._pause()

    def _run(self, data: str | bytes) -> None:
        pending = self._handler.message(data)
        if pending is None:
            return
        self._free -= 1
        pending.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[Any]) -> None:
        if self._tasks is not None:
            self._tasks.discard(future)
        self._free += 1
        if self._paused:
            self._drain()

    def gate(self, future: asyncio.Future[Any]) -> None:
        """Hold every message until ``future`` is done (it is not cancelled here)."""
        self._gated = True
        self._pause()
        future.add_done_callback(self._ungate)

    def _ungate(self, _: object) -> None:
        self._gated = False
        self._drain()

    def _drain(self) -> None:
        backlog = self._backlog
        while backlog and self._free > 0 and not self._gated:
            self._run(backlog.popleft())
        if self._free > 0 and not self._gated and not backlog and self._paused:
            self._paused = False
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
