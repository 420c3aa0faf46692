"""A client connection as the core sees it: identity, timestamps, channels, and a frame sink.

The sink is the transport edge (``transport/``); the core only writes complete frames to it and
never awaits it. Each connection's outgoing buffer is bounded by ``outbox_max_bytes``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from sockway.core.frames import encode_data_frame, encode_text_frame
from sockway.core.ids import ChannelName, ConnectionId

NO_CHANNELS: frozenset[ChannelName] = frozenset()


class FrameSink(Protocol):
    """The transport side of one connection (implemented in ``transport/``)."""

    def write_frame(self, frame: bytes) -> None:
        """Queue a complete frame for writing; never blocks, never awaits."""

    def buffered_bytes(self) -> int:
        """Bytes queued but not yet accepted by the kernel."""

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection with this close code (asynchronously)."""

    def cut(self, code: int, reason: str) -> None:
        """Drop the connection now, without waiting for the client (a slow consumer: a close
        frame would wait behind the data it does not read). ``code`` is what the connection's
        end reports (``$disconnect``); the client sees the TCP connection end."""


class State(enum.Enum):
    CONNECTING = "connecting"  # $connect still running: not reachable (410)
    OPEN = "open"
    # The transport is closed or being cut off (the peer reset it, a slow consumer): nothing
    # is written to it any more and it joins nothing; its memberships end when its front
    # door's cleanup has run (``Node.remove``), once.
    CLOSING = "closing"
    CLOSED = "closed"


class SendResult(enum.Enum):
    SENT = "sent"
    GONE = "gone"  # not open: unknown, still connecting, or closed
    OUTBOX_FULL = "outbox_full"  # the client is not reading fast enough


@dataclass(eq=False, slots=True)
class Connection:
    """One WebSocket client. Identity is the object itself (``eq=False``) so it hashes fast."""

    id: ConnectionId
    api_name: str
    sink: FrameSink
    connected_at_ms: int
    source_ip: str
    user_agent: str | None
    outbox_max_bytes: int
    last_active_ms: int = 0
    state: State = State.CONNECTING
    authorizer: dict[str, Any] | None = None
    # Most connections never join a channel: they share one empty frozenset until they do
    # (an empty set is 216 bytes per idle connection; bench/ANALYSIS.md "Idle connections").
    channels: set[ChannelName] | frozenset[ChannelName] = NO_CHANNELS

    @property
    def gone(self) -> bool:
        """Closing or closed: never reachable again."""
        return self.state is State.CLOSING or self.state is State.CLOSED

    def send_text(self, payload: bytes, now_ms: int) -> SendResult:
        """Send ``payload`` as one text frame."""
        return self.send_frame(encode_text_frame(payload), now_ms)

    def send_data(self, payload: bytes, now_ms: int) -> SendResult:
        """Send bytes of unknown encoding: a text frame if UTF-8, else a binary frame."""
        return self.send_frame(encode_data_frame(payload), now_ms)

    def send_frame(self, frame: bytes, now_ms: int) -> SendResult:
        """Write an already encoded frame unless the connection is gone or its outbox is full.

        Guarantee: a frame is either written whole or not at all (the caller learns which);
        nothing is dropped silently.
        """
        if self.state is not State.OPEN:
            return SendResult.GONE
        # The bound applies to what is already queued, so a frame larger than the bound still
        # goes to a client that keeps up; memory per connection stays ≤ bound + one message.
        if self.sink.buffered_bytes() > self.outbox_max_bytes:
            return SendResult.OUTBOX_FULL
        self.sink.write_frame(frame)
        self.last_active_ms = now_ms
        return SendResult.SENT
