"""The per-process node: connection registry, channel membership and local fan-out.

One ``Node`` per process, built at start-up and passed explicitly (DESIGN: no module state).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from sockway.core.connection import NO_CHANNELS, Connection, State
from sockway.core.frames import encode_data_frame
from sockway.core.ids import ChannelName, Clock, ConnectionId

# Close code for a subscriber that cannot keep up with a channel's fan-out (RFC 6455 §7.4.1:
# 1008 policy violation). The client may reconnect; its outbox was over the bound.
SLOW_CONSUMER_CLOSE = (1008, "Slow consumer: outbox full")
# RFC 6455 §7.4.1 1001: the server is going down (also API Gateway's close for idle and
# over-age connections, apigw spec §6, §7).
GOING_AWAY_CLOSE = (1001, "Going away")
# RFC 6455 §7.4.1 1011: the server failed writing to the connection (our bug, logged).
INTERNAL_ERROR_CLOSE = (1011, "Internal error")

log = logging.getLogger("sockway.node")


class NodeObserver(Protocol):
    """Told of every change other nodes must learn of (``frontdoor.cluster`` implements it)."""

    def opened(self, conn: Connection) -> None: ...

    def closed(self, conn: Connection) -> None: ...

    def channel_count(self, api_name: str, channel: ChannelName, count: int) -> None:
        """The channel's local member count changed to ``count`` (0: no member left)."""


class Node:
    """Connections and channels of this process."""

    def __init__(self, clock: Clock, observer: NodeObserver | None = None) -> None:
        self.clock = clock
        self.observer = observer
        self._connections: dict[ConnectionId, Connection] = {}
        self._channels: dict[tuple[str, ChannelName], set[Connection]] = {}

    def now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    # -- registry ---------------------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        """Register a connection (still CONNECTING: not reachable until ``open``)."""
        self._connections[conn.id] = conn

    def open(self, conn: Connection) -> None:
        conn.state = State.OPEN
        conn.last_active_ms = self.now_ms()
        if self.observer is not None:
            self.observer.opened(conn)

    def closing(self, conn: Connection) -> None:
        """The connection's transport is closed (or closing): from now on nothing is written
        to it and it joins nothing, while its front door's cleanup (leaving its channels, with
        their member events and webhooks) still runs; ``remove`` ends it."""
        if conn.state is State.OPEN:
            conn.state = State.CLOSING

    def drop_slow(self, conn: Connection) -> bool:
        """Cut off a connection whose outbox is over its bound (``SLOW_CONSUMER_CLOSE``): it
        gets nothing more and its transport is dropped now, so its front door's cleanup (it
        leaves every channel) follows at once. True the first time only: the caller counts
        it; it is logged here, once per connection."""
        if conn.state is not State.OPEN:
            return False
        conn.state = State.CLOSING
        log.warning(
            "slow consumer %s disconnected: more than %d bytes unsent (%s)",
            conn.id,
            conn.outbox_max_bytes,
            SLOW_CONSUMER_CLOSE[1],
            extra={"api": conn.api_name, "connection_id": conn.id},
        )
        conn.sink.cut(*SLOW_CONSUMER_CLOSE)
        return True

    def remove(self, conn: Connection) -> None:
        """Forget a connection and end all its channel memberships."""
        was_open = conn.state is State.OPEN or conn.state is State.CLOSING
        conn.state = State.CLOSED
        if self._connections.pop(conn.id, None) is not None and was_open and self.observer:
            self.observer.closed(conn)
        for channel in conn.channels:
            self._discard(conn, channel)
        conn.channels = NO_CHANNELS

    def _discard(self, conn: Connection, channel: ChannelName) -> None:
        key = (conn.api_name, channel)
        members = self._channels.get(key)
        if members is None:
            return
        members.discard(conn)
        if not members:
            del self._channels[key]
        if self.observer is not None:
            self.observer.channel_count(conn.api_name, channel, len(members))

    def get(self, api_name: str, conn_id: str) -> Connection | None:
        """The open or connecting connection with this id on this API, else None."""
        conn = self._connections.get(ConnectionId(conn_id))
        if conn is None or conn.api_name != api_name:
            return None
        return conn

    def connections(self, api_name: str | None = None) -> Iterator[Connection]:
        for conn in list(self._connections.values()):
            if api_name is None or conn.api_name == api_name:
                yield conn

    def count(self) -> int:
        return len(self._connections)

    # -- channels (sockway extension to API Gateway, see README "Channels") ----------------

    def join(self, conn: Connection, channel: ChannelName) -> None:
        """Add a membership; allowed while CONNECTING (delivery starts once OPEN)."""
        if conn.gone:
            raise ValueError("connection is closed")
        if channel in conn.channels:
            return
        if isinstance(conn.channels, frozenset):
            conn.channels = set()
        conn.channels.add(channel)
        members = self._channels.setdefault((conn.api_name, channel), set())
        members.add(conn)
        if self.observer is not None:
            self.observer.channel_count(conn.api_name, channel, len(members))

    def leave(self, conn: Connection, channel: ChannelName) -> bool:
        """Remove the membership; True if there was one."""
        if channel not in conn.channels or isinstance(conn.channels, frozenset):
            return False
        conn.channels.discard(channel)
        self._discard(conn, channel)
        return True

    def members(self, api_name: str, channel: ChannelName) -> list[Connection]:
        return list(self._channels.get((api_name, channel), ()))

    def member_count(self, api_name: str, channel: ChannelName) -> int:
        return len(self._channels.get((api_name, channel), ()))

    def channel_names(self, api_name: str) -> list[ChannelName]:
        """Channels of this API with at least one member."""
        return [name for (api, name) in self._channels if api == api_name]

    def publish(
        self,
        api_name: str,
        channel: ChannelName,
        payload: bytes,
        exclude: Connection | None = None,
    ) -> tuple[int, int]:
        """Send ``payload`` to every member of the channel but ``exclude``: as a text frame, or
        as a binary frame when it is not UTF-8 (only ``@channels`` callers can publish such
        bytes; a text frame must be valid UTF-8, RFC 6455 §5.6).

        The frame is encoded once and written to each member without awaiting any of them.
        A member whose outbox is full is disconnected (``drop_slow``), never allowed to grow
        memory. A member that is closing (its peer reset the connection, its end is still
        being cleaned up) is skipped; a write that fails anyway (our bug) is logged and that
        member cut off: no member stops the loop (issue 13). Returns ``(delivered,
        dropped_slow_consumers)``, each slow consumer counted by the publication that found
        it only.
        """
        members = self._channels.get((api_name, channel))
        if not members:
            return 0, 0
        frame = encode_data_frame(payload)  # one UTF-8 check per publication, not per member
        now = self.now_ms()
        delivered = 0
        slow: list[Connection] = []
        broken: list[Connection] = []
        open_ = State.OPEN
        for conn in members:
            # Connection.send_frame inlined: one Python call less per recipient (the loop is
            # the fan-out's hot path; bench/ANALYSIS.md "Fan-out ceiling").
            if conn.state is not open_ or conn is exclude:
                continue
            sink = conn.sink
            if sink.buffered_bytes() > conn.outbox_max_bytes:
                slow.append(conn)
                continue
            try:  # free unless it raises (Python 3.11 zero-cost exceptions)
                sink.write_frame(frame)
            except Exception:
                log.exception(
                    "writing to %s failed",
                    conn.id,
                    extra={"api": api_name, "connection_id": conn.id},
                )
                broken.append(conn)
                continue
            conn.last_active_ms = now
            delivered += 1
        # After the loop: a sink may call back into the node (and change ``members``).
        dropped = sum(self.drop_slow(conn) for conn in slow)
        for conn in broken:
            if conn.state is open_:
                conn.state = State.CLOSING
                conn.sink.cut(*INTERNAL_ERROR_CLOSE)
        return delivered, dropped
