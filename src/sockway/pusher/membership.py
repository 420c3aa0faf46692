"""Subscribing and leaving on a cluster (issue 6; pusher spec §1.3, §1.5, §4.1).

What ``PusherAppState.join``/``leave`` return on a cluster, awaited by the session before the
socket's next frame:

- a client is told it is subscribed (or signed in) only once the broker confirmed this node's
  subscription, so a publication of another node right after reaches it;
- the webhooks of one channel keep the order a single node gives them: ``channel_occupied``,
  ``member_added``, ``subscription_count``, ``cache_miss`` … ``member_removed``,
  ``channel_vacated`` (occupancy transitions come from the ``Cluster``'s count writer);
- presence goes through the broker (``PusherCluster.presence_join/leave``) on the user's first
  and last socket of this node; one channel's presence changes on this node run in order
  (``PusherCluster.serial``); members of every node are listed in ``subscription_succeeded``
  and count toward ``max_presence_members_per_channel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sockway.brokers.base import BrokerUnavailable
from sockway.core.ids import ChannelName
from sockway.pusher import wire
from sockway.pusher.channels import Kind, is_cache, kind_of
from sockway.pusher.wire import SubscriptionError

if TYPE_CHECKING:
    from sockway.pusher.cluster import PusherCluster
    from sockway.pusher.state import PusherAppState, PusherSocket


def presence_full() -> SubscriptionError:
    """soketi's refusal of a new member over ``max_presence_members_per_channel`` (§1.5)."""
    return SubscriptionError(
        "LimitReached",
        "The maximum members per presence channel limit was reached",
        wire.OVER_CAPACITY,
    )


async def count_reported(app: PusherAppState, channel: str) -> None:
    """``Node.join``/``leave`` changed the channel's local count: wait until the ``Cluster``
    reported it, so its occupied/vacated webhook precedes the ones that follow and the
    cluster-wide count read next includes this change (on any broker)."""
    await _cluster(app).cluster.reported(app.name, channel)


def _cluster(app: PusherAppState) -> PusherCluster:
    assert app.cluster is not None
    return app.cluster


async def joined(app: PusherAppState, sock: PusherSocket, channel: str) -> None:
    """A non-presence subscribe: the membership starts once the broker confirmed this node's
    subscription, and ``subscription_succeeded`` (+ the cached event) follows at once, so
    nothing published reaches the socket before it (``PusherCluster.subscribing``)."""
    name = ChannelName(channel)
    async with _cluster(app).subscribing(channel):
        if sock.conn.gone:
            return
        fresh = name not in sock.conn.channels
        app.node.join(sock.conn, name)
        app.send(sock, wire.subscription_succeeded(channel))
        missed = is_cache(channel) and not app.send_cached(sock, channel)
    await counted(app, channel, fresh, missed)


async def counted(app: PusherAppState, channel: str, changed: bool, cache_missed: bool) -> None:
    """After a non-presence join/leave: the cluster-wide subscription_count webhook, then the
    cache_miss webhook."""
    await count_reported(app, channel)
    wanted = app.webhooks.wants("subscription_count")
    if changed and wanted and kind_of(channel) is not Kind.PRESENCE:
        try:
            count = await _cluster(app).count(channel)
        except BrokerUnavailable as exc:
            _cluster(app).outage(f"subscription_count webhook of {channel} not sent", exc)
        else:
            app.count_changed(channel, count)
    if cache_missed:
        app.webhooks.emit({"name": "cache_miss", "channel": channel})


async def join_presence(
    app: PusherAppState, sock: PusherSocket, channel: str, user_id: Any, user_info: Any
) -> None:
    """A presence subscribe: capacity against the members of every node, the broker's
    member_added transition, then ``subscription_succeeded`` listing every node's members."""
    cluster = _cluster(app)
    async with cluster.serial.hold(channel):
        key = str(user_id)
        if not app.presence.has_user(channel, user_id):
            members = await cluster.members_or_local(channel, app.presence)
            limit = app.settings.max_presence_members_per_channel
            if len(members) >= limit and all(str(m[0]) != key for m in members):
                app.send(sock, wire.subscription_error(channel, presence_full()))
                return
        previous = sock.presence.get(channel)
        if previous is not None and str(previous) != key:  # the socket changes user
            await _leave_presence_locked(app, sock, channel, keep_membership=True)
        if sock.conn.gone:
            return
        app.node.join(sock.conn, ChannelName(channel))
        await count_reported(app, channel)  # channel_occupied before member_added
        # Member events of other nodes reach this node before their list is read, so a
        # member is never missed (at worst announced twice).
        await cluster.ready(channel)
        sock.presence[channel] = user_id
        if app.presence.join(channel, sock.socket_id, user_id, user_info) and (
            await cluster.presence_join(channel, user_id, user_info)
        ):
            app.member_added(channel, user_id, user_info, sock)
        members = await cluster.members_or_local(channel, app.presence)
        ids = [m[0] for m in members]
        app.send(sock, wire.presence_succeeded(channel, ids, {str(i): u for i, u in members}))
        if is_cache(channel) and not app.send_cached(sock, channel):
            app.webhooks.emit({"name": "cache_miss", "channel": channel})


async def leave_presence(app: PusherAppState, sock: PusherSocket, channel: str) -> None:
    async with _cluster(app).serial.hold(channel):
        if channel in sock.presence:
            await _leave_presence_locked(app, sock, channel)


async def _leave_presence_locked(
    app: PusherAppState, sock: PusherSocket, channel: str, keep_membership: bool = False
) -> None:
    """member_removed (if the user left the cluster), then the membership ends (so
    member_removed precedes channel_vacated)."""
    user_id = sock.presence.pop(channel)
    if app.presence.leave(channel, sock.socket_id, user_id) is not None and (
        await _cluster(app).presence_leave(channel, user_id)
    ):
        app.member_removed(channel, user_id, sock)
    if not keep_membership:
        app.node.leave(sock.conn, ChannelName(channel))
