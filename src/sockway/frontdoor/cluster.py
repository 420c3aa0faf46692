"""This node's membership of the cluster: the glue between ``Node``, front doors and a broker.

``Cluster`` is the broker's ``Inbox`` and the node's ``NodeObserver`` (DESIGN: a node
subscribes a broker channel when its first local subscriber arrives). It

- registers open connections in the broker's connection registry (``"<api>|<id>"``) so any
  node can find the one holding a connection (issue 6 §2);
- keeps the broker subscription ``"<api>|<channel>"`` while the node has members of that
  channel, and delivers publications of other nodes to the local members (``Node.publish``);
- reports local channel counts to the broker (coalesced: the latest count per channel is
  written, in order, by one task) and hands the cluster-wide occupied/vacated transitions to the
  API that owns the channel;
- routes requests between nodes to the API they are for (``"op"`` + JSON args + raw data).

A front door that needs more than plain channels (AppSync wildcards, Pusher presence and users)
registers a ``ClusterMember`` for its API name. Topics are ``"<api>|<rest>"``: API names
(``[A-Za-z0-9_-]``) and channel names never contain ``|`` or ``*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import orjson

from sockway.brokers.base import Broker, BrokerUnavailable, Change, NodeState, Transition
from sockway.core.connection import Connection, State
from sockway.core.ids import ChannelName
from sockway.core.node import Node

log = logging.getLogger("sockway.cluster")

SEP = "|"
REQUEST_TIMEOUT_S = 5.0

RequestHandler = Callable[[dict[str, Any], bytes], Awaitable[tuple[dict[str, Any], bytes]]]


class ClusterMember(Protocol):
    """What an API adds to plain channel delivery (all optional behaviour lives here)."""

    def on_publication(self, key: str, rest: str, payload: bytes, exclude: str | None) -> bool:
        """Handle a publication of another node; False to fall back to plain channel
        delivery (``rest`` is the topic after ``"<api>|"``)."""

    def on_change(self, change: Change) -> None:
        """A cluster-wide transition of one of this API's channels (occupied, vacated, ...)."""


def topic(api: str, rest: str) -> str:
    return f"{api}{SEP}{rest}"


OUTAGE_LOG_INTERVAL_S = 10.0  # a broker outage is logged at most this often per API


class OutageLog:
    """What a broker outage costs one API: counted always, logged at most every
    ``OUTAGE_LOG_INTERVAL_S`` (an outage must not flood the log with one line per message)."""

    def __init__(self) -> None:
        self._logged_at = -OUTAGE_LOG_INTERVAL_S
        self._unlogged = 0

    def due(self) -> int | None:
        """Count one more; the number to log now (then it starts again), or None."""
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < OUTAGE_LOG_INTERVAL_S:
            return None
        count, self._logged_at, self._unlogged = self._unlogged, now, 0
        return count


class Cluster:
    def __init__(self, broker: Broker, node: Node) -> None:
        self.broker = broker
        self.node = node
        node.observer = self
        self.members: dict[str, ClusterMember] = {}
        self.requests: dict[str, RequestHandler] = {}
        self._subscriptions: dict[str, int] = {}  # broker key → local references
        self._counts: dict[tuple[str, str], int] = {}  # what this node reported (n > 0)
        self._dirty: dict[tuple[str, str], int] = {}  # latest local counts not yet reported
        self._presence: dict[tuple[str, str, str], bytes] = {}
        self._writer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while every count change so far is reported
        self._writing: tuple[str, str] | None = None  # the count being reported right now
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        self._idle.set()

    @property
    def node_id(self) -> str:
        return self.broker.node_id

    @property
    def available(self) -> bool:
        return self.broker.available

    async def start(self) -> None:
        await self.broker.start(self)
        self._writer = asyncio.get_running_loop().create_task(self._write_counts())

    async def flush(self, timeout: float = REQUEST_TIMEOUT_S) -> None:
        """Return once every count change so far is reported and its transition handled (a
        draining node's ``channel_vacated`` webhooks are queued before it stops); gives up
        after ``timeout`` (a broker outage: the dead-node cleanup reports them instead)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def reported(self, api: str, channel: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        """Return once the channel's latest local count is reported and its cluster-wide
        transition handled, so what the caller does next (a webhook, a count read) comes after
        it; gives up after ``timeout`` (a broker outage)."""
        key = (api, channel)
        if key not in self._dirty and self._writing != key:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(waiter)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await waiter

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.broker.close()

    # -- subscriptions (reference-counted per broker key) -------------------------------------

    def hold(self, key: str) -> None:
        refs = self._subscriptions.get(key, 0)
        self._subscriptions[key] = refs + 1
        if refs == 0:
            self.broker.subscribe(key)

    def release(self, key: str) -> None:
        refs = self._subscriptions.get(key, 0)
        if refs <= 1:
            self._subscriptions.pop(key, None)
            if refs == 1:
                self.broker.unsubscribe(key)
        else:
            self._subscriptions[key] = refs - 1

    async def ready(self, key: str, timeout: float = REQUEST_TIMEOUT_S) -> bool:
        """Wait until the broker confirmed the subscription ``key`` (so publications of other
        nodes arrive); False when the broker is unreachable: the caller goes on locally."""
        try:
            await self.broker.subscribed(key, timeout)
        except BrokerUnavailable as exc:
            log.warning("subscription %s not confirmed by the broker: %s", key, exc)
            return False
        return True

    @contextlib.asynccontextmanager
    async def subscribing(self, key: str) -> AsyncIterator[bool]:
        """Hold the subscription ``key`` and wait until the broker confirmed it (yields
        ``ready``'s answer); the caller adds its local subscriber inside the block, and that
        subscriber's own hold keeps the subscription after it.

        Adding the subscriber only once the broker confirmed means nothing published reaches
        it before the client is told it is subscribed — the order a single node gives."""
        self.hold(key)
        try:
            yield await self.ready(key)
        finally:
            self.release(key)

    # -- NodeObserver -----------------------------------------------------------------------

    def opened(self, conn: Connection) -> None:
        self.broker.register(topic(conn.api_name, conn.id))

    def closed(self, conn: Connection) -> None:
        self.broker.unregister(topic(conn.api_name, conn.id))

    def channel_count(self, api_name: str, channel: ChannelName, count: int) -> None:
        key = topic(api_name, channel)
        was = self._dirty.get((api_name, channel), self._counts.get((api_name, channel), 0))
        if was == 0 and count > 0:
            self.hold(key)
        elif was > 0 and count == 0:
            self.release(key)
        self._dirty[(api_name, channel)] = count
        self._idle.clear()
        self._wake.set()

    def tally(self, scope: str, name: str, count: int) -> None:
        """This node's part of a cluster-wide sum (``broker.count(scope, name)`` reads it):
        written like a channel's count — coalesced, in order, rewritten after an outage,
        removed with a dead node — but with no broker subscription, and no member of the
        cluster has ``scope``, so its transitions go nowhere."""
        self._dirty[(scope, name)] = count
        self._idle.clear()
        self._wake.set()

    def written(self, scope: str, name: str) -> int:
        """The count of ``(scope, name)`` this node has handed to the broker last: what a
        ``broker.count`` issued now includes as this node's part (the writer keeps order)."""
        return self._counts.get((scope, name), 0)

    async def _write_counts(self) -> None:
        """Report local counts in order, the latest value per channel (coalesced)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._report_dirty()
            if not self._dirty:
                self._idle.set()

    async def _report_dirty(self) -> None:
        while self._dirty:
            key, count = next(iter(self._dirty.items()))
            del self._dirty[key]
            if count:
                self._counts[key] = count
            else:
                self._counts.pop(key, None)
            self._writing = key
            try:
                await self._report(*key, count)
            finally:
                self._writing = None
                if key not in self._dirty:
                    for waiter in self._waiters.pop(key, ()):
                        if not waiter.done():
                            waiter.set_result(None)

    async def _report(self, api: str, channel: str, count: int) -> None:
        try:
            change = await self.broker.set_count(api, channel, count)
        except BrokerUnavailable:
            return  # rewritten from snapshot() when the broker is back
        except Exception:
            log.exception("reporting the count of %s %s failed", api, channel)
            return
        if change is not None:
            self._dispatch_change(Change(change, api, channel))

    # -- publications -----------------------------------------------------------------------

    def publish_local(
        self, api: str, channel: str, payload: bytes, exclude: Connection | None = None
    ) -> tuple[int, int]:
        return self.node.publish(api, ChannelName(channel), payload, exclude)

    async def publish(
        self,
        api: str,
        rest: str,
        payload: bytes,
        exclude: str | None = None,
        *,
        strict: bool = True,
    ) -> None:
        """To the other nodes only (raises ``BrokerUnavailable``; ``strict``: see
        ``Broker.publish``)."""
        await self.broker.publish(topic(api, rest), payload, exclude, strict=strict)

    async def publish_many(
        self, api: str, items: list[tuple[str, bytes, str | None]], *, strict: bool = True
    ) -> None:
        """Several ``(rest, payload, exclude)`` to the other nodes, all or none (raises
        ``BrokerUnavailable``)."""
        keyed = [(topic(api, rest), payload, exclude) for rest, payload, exclude in items]
        await self.broker.publish_many(keyed, strict=strict)

    def publish_soon(self, api: str, rest: str, payload: bytes, exclude: str | None = None) -> None:
        """To the other nodes, without waiting (best effort); an outage is logged and counted."""
        task = asyncio.get_running_loop().create_task(
            self.publish(api, rest, payload, exclude, strict=False)
        )
        task.add_done_callback(_log_failure)

    def on_publication(self, key: str, topic_: str, payload: bytes, exclude: str | None) -> None:
        api, _, rest = topic_.partition(SEP)
        member = self.members.get(api)
        if member is not None and member.on_publication(key, rest, payload, exclude):
            return
        excluded = self.node.get(api, exclude) if exclude else None
        self.node.publish(api, ChannelName(rest), payload, excluded)

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self, node_id: str, op: str, args: dict[str, Any], data: bytes = b""
    ) -> tuple[dict[str, Any], bytes]:
        if node_id == self.node_id:
            return await self._answer(op, args, data)
        reply = await self.broker.request(node_id, _pack(op, args, data), REQUEST_TIMEOUT_S)
        return _unpack_reply(reply)

    async def request_all(
        self, op: str, args: dict[str, Any], data: bytes = b""
    ) -> list[tuple[dict[str, Any], bytes]]:
        replies = await self.broker.request_all(_pack(op, args, data), REQUEST_TIMEOUT_S)
        return [_unpack_reply(r) for r in replies]

    async def on_request(self, body: bytes) -> bytes:
        head, _, data = body.partition(b"\n")
        message = orjson.loads(head)
        answer, out = await self._answer(message["op"], message["args"], data)
        return orjson.dumps(answer) + b"\n" + out

    async def _answer(
        self, op: str, args: dict[str, Any], data: bytes
    ) -> tuple[dict[str, Any], bytes]:
        handler = self.requests.get(op)
        if handler is None:
            return {"error": f"unknown request {op!r}"}, b""
        return await handler(args, data)

    # -- transitions ------------------------------------------------------------------------

    def on_orphaned(self, changes: list[Change]) -> None:
        for change in changes:
            self._dispatch_change(change)

    def _dispatch_change(self, change: Change) -> None:
        member = self.members.get(change.scope)
        if member is None:
            return
        try:
            member.on_change(change)
        except Exception:
            log.exception("handling %s of %s failed", change.transition.value, change.channel)

    # -- presence (node-level: called on a user's first / last socket on this node) -----------

    async def presence_join(
        self, api: str, channel: str, user_key: str, member: bytes
    ) -> Transition | None:
        self._presence[(api, channel, user_key)] = member
        return await self.broker.presence_join(api, channel, user_key, member)

    async def presence_leave(self, api: str, channel: str, user_key: str) -> Transition | None:
        self._presence.pop((api, channel, user_key), None)
        return await self.broker.presence_leave(api, channel, user_key)

    def snapshot(self) -> NodeState:
        counts = dict(self._counts)
        for key, count in self._dirty.items():
            if count:
                counts[key] = count
            else:
                counts.pop(key, None)
        return NodeState(
            subscriptions=set(self._subscriptions),
            # Derived, not kept: a set of keys would cost every connection ~150 bytes.
            registered={
                topic(c.api_name, c.id) for c in self.node.connections() if c.state is State.OPEN
            },
            counts=counts,
            presence=dict(self._presence),
        )


def _pack(op: str, args: dict[str, Any], data: bytes) -> bytes:
    return orjson.dumps({"op": op, "args": args}) + b"\n" + data


def _unpack_reply(reply: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, data = reply.partition(b"\n")
    answer: dict[str, Any] = orjson.loads(head)
    return answer, data


def _log_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, BrokerUnavailable):
        log.warning("publication not sent to other nodes: %s", exc)
    elif exc is not None:
        log.error("publishing to other nodes failed", exc_info=exc)
