"""One Pusher app across the nodes of a cluster (issue 6; pusher spec §1.3, §1.7, §1.8, §3, §4).

``PusherCluster`` is the app's ``ClusterMember``: it carries the app's publications between
nodes and answers the cluster-wide queries from the broker, so every node of the gateway
behaves as one Pusher app. Topics (after ``"<app>|"``; channel names never contain ``|``):

- ``<channel>``: channel events and member_added/removed. The ``Cluster`` holds it while this
  node has a subscriber of the channel (payload: the frame).
- ``#cache|<channel>``: API events on cache channels. Every node holds the pattern
  ``#cache|*`` so that every node keeps the last event of every cache channel (spec §1.8); the
  broker has no shared key-value store, so a node that starts (or reconnects to the broker)
  after the event misses it.
- ``#user|<quoted user id>``: server-to-user events (payload: the frame) and
  terminate_connections (payload ``TERMINATE``); held while this node has a socket signed in
  as that user.

A publication's ``exclude`` is the socket id that must not receive it, wherever it is.
Cluster-wide transitions come from the broker: exactly one node sees each, so the
channel_occupied / channel_vacated / member webhooks fire once (``on_change``).

While the broker is unreachable (issue 6 §4): HTTP API calls answer 503 (retryable) and
deliver nothing; client events and member_added/removed reach this node's subscribers only
(``sockway_cluster_publish_failures``, logged at most every 10 s); presence falls back to this
node's members (``subscription_succeeded`` lists them; member webhooks fire from this node's
view, so they may repeat another node's); subscription_count webhooks are skipped. After the
broker is back, its resync reports the transitions the outage hid (``on_change``: e.g. the
channel_vacated of a channel emptied meanwhile) when Redis kept its data, and none when Redis
restarted empty (docs/deployment.md "During a Redis outage").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import orjson

from sockway.brokers.base import BrokerUnavailable, Change, Transition
from sockway.core.presence import Presence
from sockway.frontdoor.cluster import Cluster, OutageLog, topic
from sockway.pusher.watchlist import ONLINE, WATCH

if TYPE_CHECKING:
    from sockway.pusher.state import PusherAppState

log = logging.getLogger("sockway.pusher.cluster")

CACHE = "#cache|"
SOCKETS = "#sockets"  # scope suffix of the app's cluster-wide socket count
USER = "#user|"
TERMINATE = b"terminate"  # never a frame: frames are JSON objects


def user_topic(user_id: str) -> str:
    """User ids are arbitrary strings; the topic must hold no ``*`` or ``|``."""
    return USER + quote(user_id, safe="")


def member_doc(user_id: Any, user_info: Any) -> bytes:
    """What the broker keeps per presence member (the id as given: numbers stay numbers)."""
    return orjson.dumps({"user_id": user_id, "user_info": user_info})


def parse_member(user_key: str, doc: bytes | None) -> tuple[Any, Any]:
    try:
        parsed = orjson.loads(doc) if doc else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and "user_id" in parsed:
        return parsed["user_id"], parsed.get("user_info")
    return user_key, None


class _Serial:
    """One FIFO lock per key (asyncio locks are fair), dropped when nobody uses it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class PusherCluster:
    """The cluster side of one Pusher app (see the module docstring)."""

    def __init__(self, app: PusherAppState, cluster: Cluster) -> None:
        self.app = app
        self.cluster = cluster
        self.name = app.name
        self.serial = _Serial()
        self._outages = OutageLog()
        cluster.members[self.name] = self
        cluster.hold(topic(self.name, CACHE + "*"))

    @property
    def available(self) -> bool:
        return self.cluster.available

    # -- outgoing ---------------------------------------------------------------------------

    async def publish(
        self, rest: str, payload: bytes, exclude: str | None = None, *, strict: bool = True
    ) -> None:
        """To the other nodes; raises ``BrokerUnavailable`` (HTTP API: 503), at once while the
        broker is known to be down (counted in ``sockway_cluster_publish_failures``);
        ``strict``: see ``Broker.publish``."""
        try:
            if not self.cluster.available:
                raise BrokerUnavailable("the broker is unavailable")
            await self.cluster.publish(self.name, rest, payload, exclude, strict=strict)
        except BrokerUnavailable as exc:
            self.app.metrics.cluster_publish_failures.labels(self.name).inc()
            self.outage(f"publication to {rest} not sent to the other nodes", exc)
            raise
        self.app.metrics.cluster_publications.labels(self.name, "out").inc()

    async def publish_many(self, items: list[tuple[str, bytes, str | None]]) -> None:
        """Several ``(rest, payload, exclude)`` to the other nodes, all or none (one HTTP API
        request: ``publish``'s errors and counts)."""
        try:
            if not self.cluster.available:
                raise BrokerUnavailable("the broker is unavailable")
            await self.cluster.publish_many(self.name, items)
        except BrokerUnavailable as exc:
            self.app.metrics.cluster_publish_failures.labels(self.name).inc()
            self.outage(f"{len(items)} publication(s) not sent to the other nodes", exc)
            raise
        self.app.metrics.cluster_publications.labels(self.name, "out").inc(len(items))

    def publish_soon(self, rest: str, payload: bytes, exclude: str | None = None) -> None:
        """To the other nodes without waiting (WebSocket-origin traffic): local delivery has
        happened already; a failure is logged and counted, never raised."""
        if not self.cluster.available:
            self.app.metrics.cluster_publish_failures.labels(self.name).inc()
            self.outage(f"publication to {rest} not sent to the other nodes", None)
            return
        task = asyncio.get_running_loop().create_task(
            self.publish(rest, payload, exclude, strict=False)
        )
        task.add_done_callback(_published)

    def outage(self, what: str, exc: Exception | None) -> None:
        """Log what a broker outage costs, at most every ``OUTAGE_LOG_INTERVAL_S``."""
        count = self._outages.due()
        if count is not None:
            log.warning(
                "broker unavailable (%s): %d operation(s) on this node only, latest: %s",
                exc or "known down",
                count,
                what,
                extra={"api": self.name},
            )

    async def ready(self, rest: str) -> None:
        """Return once publications of other nodes to ``rest`` reach this node (at once during
        a broker outage: the subscription is then local until the broker is back)."""
        await self.cluster.ready(topic(self.name, rest))

    def subscribing(self, rest: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """``Cluster.subscribing`` for ``rest``: a cache-channel event that arrives meanwhile
        is then sent once, as the cached event, not live and again from the cache (§1.8)."""
        return self.cluster.subscribing(topic(self.name, rest))

    def hold_user(self, user_id: str) -> None:
        self.cluster.hold(topic(self.name, user_topic(user_id)))

    def release_user(self, user_id: str) -> None:
        self.cluster.release(topic(self.name, user_topic(user_id)))

    # -- incoming (ClusterMember) -------------------------------------------------------------

    def on_publication(self, key: str, rest: str, payload: bytes, exclude: str | None) -> bool:
        """Deliver another node's publication here (never raises into the broker)."""
        self.app.metrics.cluster_publications.labels(self.name, "in").inc()
        try:
            self._deliver(rest, payload, exclude)
        except Exception:
            log.exception("delivering a publication of %s failed", rest, extra={"api": self.name})
        return True

    def _deliver(self, rest: str, payload: bytes, exclude: str | None) -> None:
        app = self.app
        excluded = app.sockets.get(exclude) if exclude else None
        if rest.startswith(WATCH):
            app.watchlists.deliver(unquote(rest[len(WATCH) :]), payload)
            return
        if rest.startswith(USER):
            user_id = unquote(rest[len(USER) :])
            if payload == TERMINATE:
                app.terminate_local(user_id)
            else:
                app.send_to_user(user_id, payload, excluded)
            return
        channel = rest
        if rest.startswith(CACHE):
            channel = rest[len(CACHE) :]
            app.store_cache(channel, payload)
        app.broadcast(channel, payload, excluded.conn if excluded else None)

    def on_change(self, change: Change) -> None:
        """A cluster-wide transition seen by this node only: its webhook fires here, once."""
        app, channel = self.app, change.channel
        if channel == ONLINE:  # a signed-in user's last node died, or the resync found them
            user_id, _ = parse_member(change.user_key or "", change.member)
            if change.transition is Transition.MEMBER_REMOVED and str(user_id) not in app.users:
                app.watchlists.announce("offline", str(user_id))
            elif change.transition is Transition.MEMBER_ADDED:
                app.watchlists.announce("online", str(user_id))
            return
        if change.transition is Transition.OCCUPIED:
            app.webhooks.emit({"name": "channel_occupied", "channel": channel})
        elif change.transition is Transition.VACATED:
            app.webhooks.emit({"name": "channel_vacated", "channel": channel})
        elif change.transition is Transition.MEMBER_REMOVED:
            # A dead node's member (presence transitions of live nodes are returned to the
            # node that caused them and never come here).
            user_id, _ = parse_member(change.user_key or "", change.member)
            app.member_removed(channel, user_id, None)
        elif change.transition is Transition.MEMBER_ADDED:
            user_id, user_info = parse_member(change.user_key or "", change.member)
            app.member_added(channel, user_id, user_info, None)

    # -- presence ---------------------------------------------------------------------------

    async def presence_join(self, channel: str, user_id: Any, user_info: Any) -> bool:
        """This node's first socket of the user joined: True when the user is new everywhere
        (on a broker outage this node's own presence decides, as it did: True)."""
        try:
            change = await self.cluster.presence_join(
                self.name, channel, str(user_id), member_doc(user_id, user_info)
            )
        except BrokerUnavailable as exc:
            self.outage(f"presence join of {channel}", exc)
            return True
        return change is Transition.MEMBER_ADDED

    async def presence_leave(self, channel: str, user_id: Any) -> bool:
        """This node's last socket of the user left: True when no node has the user."""
        try:
            change = await self.cluster.presence_leave(self.name, channel, str(user_id))
        except BrokerUnavailable as exc:
            self.outage(f"presence leave of {channel}", exc)
            return True
        return change is Transition.MEMBER_REMOVED

    # -- cluster-wide queries (raise BrokerUnavailable) ---------------------------------------

    async def count(self, channel: str) -> int:
        return await self.cluster.broker.count(self.name, channel)

    # The app's open sockets on every node, for max_connections (a tally, not a channel).
    def sockets_changed(self, local: int) -> None:
        self.cluster.tally(self.name + SOCKETS, "", local)

    async def sockets(self, local: int) -> int:
        """Every node's last reported count, with this node's part replaced by ``local``
        (exact here; another node's lags by what it has not written yet)."""
        total = await self.cluster.broker.count(self.name + SOCKETS, "")
        return total - self.cluster.written(self.name + SOCKETS, "") + local

    async def channels(self, prefix: str) -> dict[str, int]:
        return await self.cluster.broker.channels(self.name, prefix)

    async def members(self, channel: str) -> list[tuple[Any, Any]]:
        """``(user_id, user_info)`` of every member on every live node."""
        docs = await self.cluster.broker.presence_members(self.name, channel)
        return [parse_member(key, doc) for key, doc in docs.items()]

    async def members_or_local(self, channel: str, local: Presence) -> list[tuple[Any, Any]]:
        """The cluster's members, or this node's during a broker outage (WebSocket side)."""
        try:
            return await self.members(channel)
        except BrokerUnavailable as exc:
            self.outage(f"members of {channel} listed from this node", exc)
            return local_members(local, channel)


def _published(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and not isinstance(task.exception(), BrokerUnavailable | None):
        log.error("publishing to other nodes failed", exc_info=task.exception())


def local_members(presence: Presence, channel: str) -> list[tuple[Any, Any]]:
    ids, hash_ = presence.snapshot(channel)
    return [(user_id, hash_.get(str(user_id))) for user_id in ids]
