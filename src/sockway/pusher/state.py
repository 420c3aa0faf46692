"""One running Pusher app: its sockets, users, presence, cache channels and webhooks.

The operations both doors share live here: subscribe/unsubscribe bookkeeping (with the
``channel_occupied``/``vacated`` and member webhooks), publishing an API event (encoded once,
written to every recipient without awaiting any), server-to-user delivery and terminating a
user's connections (pusher spec §1.5-§1.8, §3.2, §4.1).

With a ``PusherCluster`` (always, in a gateway) the app spans every node of the cluster
(issue 6): publications also go to the other nodes, occupancy webhooks come from the broker's
cluster-wide transitions, presence is deduplicated by the broker and queries answer for the
whole cluster (``pusher_cluster``). Without one (unit tests) everything is local and
synchronous. On a cluster ``join``/``leave``/``sign_in`` return an awaitable (the broker's part,
``pusher_membership``) that the session awaits before reading the socket's next frame.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from sockway.core.connection import Connection, SendResult
from sockway.core.frames import encode_text_frame
from sockway.core.ids import ChannelName
from sockway.core.node import Node
from sockway.core.presence import Presence
from sockway.observability.metrics import Metrics
from sockway.observability.tap import Activity, Tap
from sockway.pusher import membership, wire
from sockway.pusher.channels import Kind, is_cache, kind_of, server_to_user_id
from sockway.pusher.cluster import CACHE, TERMINATE, PusherCluster, user_topic
from sockway.pusher.settings import PusherApp
from sockway.pusher.watchlist import Watchlists
from sockway.pusher.webhooks import Webhooks


@dataclass(eq=False, slots=True)
class PusherSocket:
    """Protocol state of one connection (its channels are ``conn.channels``)."""

    conn: Connection
    last_seen_ms: int
    user_id: str | None = None
    presence: dict[str, Any] = field(default_factory=dict)  # channel → user_id as given
    ping_sent_ms: int | None = None
    auth_deadline_ms: int | None = None
    rate_window_ms: int = 0
    rate_count: int = 0
    watchlist: tuple[str, ...] = ()  # the user ids this signed-in socket watches

    @property
    def socket_id(self) -> str:
        return str(self.conn.id)


class PusherAppState:
    def __init__(self, settings: PusherApp, node: Node, metrics: Metrics, hooks: Webhooks):
        self.settings = settings
        self.node = node
        self.metrics = metrics
        self.webhooks = hooks
        self.presence = Presence()  # this node's sockets only
        self.sockets: dict[str, PusherSocket] = {}
        self.users: dict[str, set[PusherSocket]] = {}
        self.cache: dict[str, tuple[int, bytes]] = {}  # channel → (expires_ms, frame payload)
        self.draining = False
        self.cluster: PusherCluster | None = None
        self.tap = Tap()  # access log and console (observability/tap.py), set by the door
        self.watchlists = Watchlists(self)
        # soketi's per-app usage counts (issue 17), resolved once: no label lookup per frame.
        labels = (settings.name, settings.app_id)
        self.bytes_in = metrics.pusher_ws_bytes.labels(*labels, "received")
        self.bytes_out = metrics.pusher_ws_bytes.labels(*labels, "sent")

    @property
    def name(self) -> str:
        return self.settings.name

    def new_socket_id(self) -> str:
        """``\\d+.\\d+`` as both SDKs validate (spec §1.10); random enough to be unique across
        the nodes of a cluster too (two 10-digit random parts)."""
        while True:
            socket_id = f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}"
            if socket_id not in self.sockets:
                return socket_id

    # -- sending ----------------------------------------------------------------------------

    def send(self, sock: PusherSocket, payload: bytes) -> None:
        result = sock.conn.send_text(payload, self.node.now_ms())
        if result is SendResult.SENT:
            self.metrics.messages_out.labels(self.name).inc()
            if self.tap.detailed:
                self.tap.emit(
                    Activity("out", self.name, connection_id=sock.conn.id, payload=payload.decode())
                )
            self.bytes_out.inc(len(payload))
        elif result is SendResult.OUTBOX_FULL and self.node.drop_slow(sock.conn):
            self.metrics.slow_consumers.labels(self.name).inc()

    def close_with_error(self, sock: PusherSocket, code: int, message: str) -> None:
        """``pusher:error`` then close with the same code (spec §1.3)."""
        self.send(sock, wire.error(code, message))
        sock.conn.sink.close(code, message)

    def broadcast(self, channel: str, payload: bytes, exclude: Connection | None = None) -> int:
        """To this node's subscribers of ``channel``."""
        delivered, slow = self.node.publish(self.name, ChannelName(channel), payload, exclude)
        if self.tap.detailed:
            self.tap.emit(
                Activity(
                    "publish",
                    self.name,
                    channel=channel,
                    payload=payload.decode(),
                    detail={"delivered": delivered},
                )
            )
        if delivered:
            self.metrics.messages_out.labels(self.name).inc(delivered)
            self.bytes_out.inc(delivered * len(payload))
        if slow:
            self.metrics.slow_consumers.labels(self.name).inc(slow)
        return delivered

    def broadcast_everywhere(self, channel: str, payload: bytes, sender: PusherSocket) -> None:
        """A WebSocket-origin publication (client event): local subscribers now, the other
        nodes' without waiting (a broker outage is logged and counted, local delivery stays)."""
        self.broadcast(channel, payload, sender.conn)
        if self.cluster is not None:
            self.cluster.publish_soon(channel, payload, sender.socket_id)

    def member_added(
        self, channel: str, user_id: Any, user_info: Any, joined: PusherSocket | None
    ) -> None:
        """The user is new cluster-wide (this node saw the transition): tell every subscriber
        but the joining socket, and the webhooks once."""
        self._members_event(channel, wire.member_added(channel, user_id, user_info), joined)
        # ``user_id`` as the member gave it (a number stays a number), as in the presence
        # frames (issue 17 case 3).
        self.webhooks.emit({"name": "member_added", "channel": channel, "user_id": user_id})

    def member_removed(self, channel: str, user_id: Any, left: PusherSocket | None) -> None:
        self._members_event(channel, wire.member_removed(channel, user_id), left)
        self.webhooks.emit({"name": "member_removed", "channel": channel, "user_id": user_id})

    def _members_event(self, channel: str, payload: bytes, sock: PusherSocket | None) -> None:
        self.broadcast(channel, payload, sock.conn if sock is not None else None)
        if self.cluster is not None:
            self.cluster.publish_soon(channel, payload, sock.socket_id if sock else None)

    # -- membership -------------------------------------------------------------------------

    def subscription_count(self, channel: str) -> int:
        """This node's subscribers (``count`` is the cluster-wide one)."""
        return self.node.member_count(self.name, ChannelName(channel))

    def join(
        self, sock: PusherSocket, channel: str, member: tuple[Any, Any] | None
    ) -> Awaitable[None] | None:
        """Add the membership, then send ``subscription_succeeded`` (+ cache) to ``sock``.

        ``member`` is ``(user_id, user_info)`` on presence channels.
        """
        if self.cluster is not None:
            if member is not None:
                return membership.join_presence(self, sock, channel, *member)
            return membership.joined(self, sock, channel)
        name = ChannelName(channel)
        already = name in sock.conn.channels
        self.node.join(sock.conn, name)
        count = self.subscription_count(channel)
        if not already and count == 1:
            self.webhooks.emit({"name": "channel_occupied", "channel": channel})
        if member is not None:
            user_id, user_info = member
            previous = sock.presence.get(channel)
            if previous is not None and str(previous) != str(user_id):
                self._presence_leave(sock, channel)
            sock.presence[channel] = user_id
            if self.presence.join(channel, sock.socket_id, user_id, user_info):
                self.member_added(channel, user_id, user_info, sock)
            ids, hash_ = self.presence.snapshot(channel)
            self.send(sock, wire.presence_succeeded(channel, ids, hash_))
        else:
            self.send(sock, wire.subscription_succeeded(channel))
            if not already:
                self.count_changed(channel, count)
        if is_cache(channel) and not self.send_cached(sock, channel):
            self.webhooks.emit({"name": "cache_miss", "channel": channel})
        return None

    def leave(self, sock: PusherSocket, channel: str) -> Awaitable[None] | None:
        if self.cluster is not None:
            if channel in sock.presence:
                return membership.leave_presence(self, sock, channel)
            if self.node.leave(sock.conn, ChannelName(channel)):
                return membership.counted(self, channel, True, False)
            return None
        if not self.node.leave(sock.conn, ChannelName(channel)):
            return None
        if channel in sock.presence:
            self._presence_leave(sock, channel)
        count = self.subscription_count(channel)
        if count == 0:
            self.webhooks.emit({"name": "channel_vacated", "channel": channel})
        if kind_of(channel) is not Kind.PRESENCE:
            self.count_changed(channel, count)
        return None

    def _presence_leave(self, sock: PusherSocket, channel: str) -> None:
        user_id = sock.presence.pop(channel)
        if self.presence.leave(channel, sock.socket_id, user_id) is not None:
            self.member_removed(channel, user_id, sock)

    def count_changed(self, channel: str, count: int) -> None:
        if self.webhooks.wants("subscription_count"):
            self.webhooks.emit(
                {"name": "subscription_count", "channel": channel, "subscription_count": count}
            )

    def send_cached(self, sock: PusherSocket, channel: str) -> bool:
        """The cached event, else ``pusher:cache_miss`` (False: the webhook is the caller's)."""
        cached = self.cache.get(channel)
        if cached is not None and cached[0] > self.node.now_ms():
            self.send(sock, cached[1])
            return True
        self.cache.pop(channel, None)
        self.send(sock, wire.cache_miss(channel))
        return False

    # -- connections ------------------------------------------------------------------------

    def add(self, sock: PusherSocket) -> None:
        self.sockets[sock.socket_id] = sock
        if self.cluster is not None:
            self.cluster.sockets_changed(len(self.sockets))

    async def remove(self, sock: PusherSocket) -> None:
        """The connection ended: leave every channel (webhooks, member_removed) and forget it."""
        try:
            for channel in list(sock.conn.channels):
                pending = self.leave(sock, channel)
                if pending is not None:
                    await pending
        finally:
            if self.sockets.pop(sock.socket_id, None) is not None and self.cluster is not None:
                self.cluster.sockets_changed(len(self.sockets))
            self.watchlists.unwatch(sock)
            if sock.user_id is not None:
                self._forget_user(sock, sock.user_id)

    def sign_in(
        self, sock: PusherSocket, user_id: str, watchlist: tuple[str, ...] = ()
    ) -> Awaitable[None] | None:
        """On a cluster: what to await before telling the client it is signed in (the user's
        topic reaches this node from then on; watchers everywhere were told it is online)."""
        arrived: Awaitable[None] | None = None
        if sock.user_id != user_id:
            if sock.user_id is not None:
                self._forget_user(sock, sock.user_id)
            sock.user_id = user_id
            owned = self.users.setdefault(user_id, set())
            if not owned:
                if self.cluster is not None:
                    self.cluster.hold_user(user_id)  # server-to-user, terminate from any node
                arrived = self.watchlists.user_arrived(user_id)
            owned.add(sock)
        if self.watchlists.enabled:
            self.watchlists.watch(sock, watchlist)
        sock.auth_deadline_ms = None
        if self.cluster is None:
            return arrived
        return _both(arrived, self.cluster.ready(user_topic(user_id)))

    def _forget_user(self, sock: PusherSocket, user_id: str) -> None:
        owned = self.users.get(user_id)
        if owned is None:
            return
        owned.discard(sock)
        if not owned:
            del self.users[user_id]
            if self.cluster is not None:
                self.cluster.release_user(user_id)
            self.watchlists.user_left(user_id)

    # -- HTTP API side ----------------------------------------------------------------------

    async def trigger(self, channel: str, event: str, data: str, socket_id: str | None) -> None:
        """An API-triggered event on every node; raises ``BrokerUnavailable`` when the other
        nodes cannot be reached (then it was delivered nowhere)."""
        await self.trigger_many([(channel, event, data, socket_id)])

    async def trigger_many(self, events: list[tuple[str, str, str, str | None]]) -> None:
        """Several ``(channel, event, data, socket_id)`` of one HTTP API request (a trigger
        to several channels, ``batch_events``) on every node, all or none: the other nodes
        get them in one broker publication first, raising ``BrokerUnavailable`` when they
        cannot (then none was delivered anywhere), then this node's subscribers."""
        if self.cluster is not None:
            items = []
            for channel, event, data, socket_id in events:
                user_id = server_to_user_id(channel)
                if user_id is not None:
                    rest = user_topic(user_id)
                elif is_cache(channel):
                    rest = CACHE + channel  # every node keeps the last event (pusher_cluster)
                else:
                    rest = channel
                items.append((rest, wire.channel_event(event, channel, data), socket_id))
            await self.cluster.publish_many(items)
        for channel, event, data, socket_id in events:
            self.publish(channel, event, data, socket_id)

    def publish(self, channel: str, event: str, data: str, socket_id: str | None) -> None:
        """Deliver an API-triggered event (``data`` exactly as the caller sent it) here."""
        payload = wire.channel_event(event, channel, data)
        excluded = self.sockets.get(socket_id) if socket_id else None
        user_id = server_to_user_id(channel)
        if user_id is not None:
            self.send_to_user(user_id, payload, excluded)
        else:
            self.broadcast(channel, payload, excluded.conn if excluded else None)
        if is_cache(channel):
            self.store_cache(channel, payload)

    def store_cache(self, channel: str, payload: bytes) -> None:
        expires = self.node.now_ms() + int(self.settings.cache_ttl_s * 1000)
        self.cache[channel] = (expires, payload)

    def send_to_user(self, user_id: str, payload: bytes, excluded: PusherSocket | None) -> None:
        """This node's sockets signed in as ``user_id``, subscribed or not (spec §1.7)."""
        recipients = [s for s in self.users.get(user_id, ()) if s is not excluded]
        if not recipients:
            return
        frame = encode_text_frame(payload)  # encoded once for all of the user's sockets
        now = self.node.now_ms()
        for sock in recipients:
            result = sock.conn.send_frame(frame, now)
            if result is SendResult.SENT:
                self.metrics.messages_out.labels(self.name).inc()
                self.bytes_out.inc(len(payload))
            elif result is SendResult.OUTBOX_FULL and self.node.drop_slow(sock.conn):
                self.metrics.slow_consumers.labels(self.name).inc()

    async def terminate_user(self, user_id: str) -> None:
        """Every node closes the user's sockets (raises ``BrokerUnavailable``)."""
        if self.cluster is not None:
            await self.cluster.publish(user_topic(user_id), TERMINATE)
        self.terminate_local(user_id)

    def terminate_local(self, user_id: str) -> int:
        sockets = list(self.users.get(user_id, ()))
        for sock in sockets:
            self.close_with_error(sock, wire.UNAUTHORIZED, "You got disconnected by the app.")
        return len(sockets)

    def purge_cache(self, now_ms: int) -> None:
        for channel in [c for c, (expires, _) in self.cache.items() if expires <= now_ms]:
            del self.cache[channel]


async def _both(first: Awaitable[None] | None, second: Awaitable[None]) -> None:
    if first is not None:
        await first
    await second
