"""The Redis broker: nodes of one gateway share a Redis (issue 6; contract in ``brokers/base``).

``RedisBroker(url, key_prefix=..., heartbeat_s=..., node_ttl_s=..., unsubscribe_grace_s=...,
sentinel_master=None)``. Key layout: ``brokers/redis_share``; Lua: ``brokers/redis_scripts``;
session, ordered writer, heartbeat, sweep and resync: ``brokers/redis_link``.

- **Connections.** Per node one pub/sub connection (``SUBSCRIBE`` exact topics, ``PSUBSCRIBE``
  ``<prefix>*`` patterns with the prefix glob-escaped, plus the node's inbox channel) and a small
  pool for commands: one *writer* task sends every command of this node in call order (its
  queue is pipelined), the heartbeat task uses its own connection. So a ``register`` then an
  ``unregister`` (or a ``subscribe`` then ``unsubscribe``) is never reordered, and an awaited
  operation completes after every earlier call of this node took effect — including the
  ``SUBSCRIBE``, which waits for Redis's confirmation.
- **Envelope.** Publications carry the origin node id (a node drops its own) and ``exclude``;
  requests and answers travel over the nodes' inbox channels with a reply id.
- **Liveness.** ``P:hb:<node>`` (PX ``node_ttl_s``) refreshed every ``heartbeat_s``. Every node
  sweeps each beat: a node of ``P:nodes`` without heartbeat is locked (SET NX PX) and its share
  removed entry by entry (per-node index, no SCAN) by Lua scripts that record the transitions in
  an orphan list, popped atomically at the end and handed to ``Inbox.on_orphaned`` once. A
  sweeper that dies midway leaves the list to the next one; the scripts stop if the node's
  heartbeat reappears (a paused node that comes back rewrites its share).
- **Reads** (``locate``, ``count``, ``channels``, ``presence_members``) only count live nodes
  (checked in the script), so a dead node's share disappears at once, before the sweep.
- **Failure.** Socket timeout 1 s, connect timeout 0.5 s, no client-side retries: an awaited
  operation raises ``BrokerUnavailable`` within about a second; queued ones fail at once when
  the connection is found lost. A supervisor reconnects with exponential backoff (50 ms → 2 s),
  resubscribes, and rewrites this node's share from ``Inbox.snapshot()`` (removing stale entries
  of its own). Transitions found doing so go to ``on_orphaned`` unless ``P:epoch`` changed, i.e.
  Redis lost its data (then every node rewrites and the transitions already fired once).
- **Sentinel.** With ``sentinel_master`` the URL lists the sentinels:
  ``redis://[[user]:password@]host1:26379,host2:26379[/db]`` (credentials and db are the
  master's); redis-py's ``Sentinel`` finds the master on every (re)connect.
- **Cluster.** Every key carries the hash tag ``{key_prefix}`` (``redis_share``), so a
  gateway's keys live in one slot and the scripts stay atomic. On (re)connect the node asks the
  URL's node for the primary of that slot and uses a plain client to it; classic pub/sub is
  cluster-wide, so publications and subscriptions go there too. One gateway uses one shard.
  A slot that moves (failover, resharding: ``MOVED``/``ASK``/``CLUSTERDOWN``) ends the session
  like a lost connection; the next one finds the new primary, entering through any cluster
  node seen before when the URL's node is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from redis.asyncio import Redis

from sockway.brokers.base import (
    DEFAULT_UNSUBSCRIBE_GRACE_S,
    BrokerUnavailable,
    Inbox,
    NodeUnreachable,
    Transition,
)
from sockway.brokers.redis_connect import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S
from sockway.brokers.redis_link import Job, RedisLink, log
from sockway.brokers.redis_share import count_transition, pack, script, unpack


class RedisBroker(RedisLink):
    """One node on a Redis (see ``brokers.base.Broker`` for the contract)."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "sockway",
        heartbeat_s: float = 1.0,
        node_ttl_s: float = 5.0,
        unsubscribe_grace_s: float = DEFAULT_UNSUBSCRIBE_GRACE_S,
        sentinel_master: str | None = None,
    ) -> None:
        super().__init__(url, key_prefix, heartbeat_s, node_ttl_s, sentinel_master)
        self.grace_s = unsubscribe_grace_s
        self._node_b = self.node_id.encode()
        self._patterns: dict[bytes, str] = {}  # PSUBSCRIBE pattern → subscription key
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._answers: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        return self._available

    @property
    def subscriptions(self) -> set[str]:
        return set(self._subs)

    async def start(self, inbox: Inbox) -> None:
        """Connect (waiting at most ~2 s; if Redis is down, keep trying in the background)."""
        self._inbox = inbox
        self._task = asyncio.create_task(self._supervise(), name=f"broker {self.node_id}")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S + 2 * SOCKET_TIMEOUT_S):
                await self._up.wait()
        except TimeoutError:
            log.warning("Redis broker unreachable at start; retrying in the background")

    async def close(self) -> None:
        if self._closed:
            return
        for handle in self._grace.values():
            handle.cancel()
        self._grace.clear()
        if self._available:
            try:
                async with asyncio.timeout(3 * SOCKET_TIMEOUT_S):
                    await self._submit(Job(self._leave, asyncio.get_running_loop().create_future()))
            except (BrokerUnavailable, TimeoutError) as exc:
                log.warning("Redis broker: could not remove this node's share on close: %r", exc)
        await self._stop()

    async def crash(self) -> None:
        """Test hook: die like SIGKILL — tasks and connections stop, nothing is cleaned up."""
        await self._stop()

    async def _stop(self) -> None:
        self._closed, self._inbox = True, None
        for t in [self._task, *self._answers]:
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        self._task = None

    # -- publications ------------------------------------------------------------------------

    def subscribe(self, key: str) -> None:
        pending = self._grace.pop(key, None)
        if pending is not None:
            pending.cancel()
        if key in self._subs:
            return
        self._subs.add(key)
        if key.endswith("*"):
            self._patterns[self.keys.channel(key).encode()] = key
        self._fire_job(lambda _: self._send_subscribe([key]))

    def unsubscribe(self, key: str) -> None:
        if key not in self._subs or key in self._grace:
            return
        self._grace[key] = asyncio.get_running_loop().call_later(self.grace_s, self._drop, key)

    async def subscribed(self, key: str, timeout: float) -> None:
        if key in self._confirmed:
            return
        if key not in self._subs:
            raise ValueError(f"{key!r} is not subscribed")

        async def after_pending_subscribes(_: Redis) -> None:
            return None  # the writer runs jobs in order: earlier subscribes are confirmed now

        try:
            async with asyncio.timeout(timeout):
                fut = asyncio.get_running_loop().create_future()
                await self._submit(Job(after_pending_subscribes, fut))
        except TimeoutError:
            raise BrokerUnavailable(f"Redis did not confirm {key!r} in {timeout} s") from None
        if key not in self._confirmed:
            raise BrokerUnavailable(f"Redis did not confirm {key!r}")

    def _drop(self, key: str) -> None:
        self._grace.pop(key, None)
        self._subs.discard(key)
        self._confirmed.discard(key)
        channel = self.keys.channel(key)
        self._patterns.pop(channel.encode(), None)

        async def send(_: Redis) -> None:
            if self._pubsub is not None:
                sender = (
                    self._pubsub.punsubscribe if key.endswith("*") else self._pubsub.unsubscribe
                )
                await sender(channel)

        self._fire_job(send)

    async def publish(
        self, topic: str, payload: bytes, exclude: str | None = None, *, strict: bool = True
    ) -> None:
        await self.publish_many([(topic, payload, exclude)], strict=strict)

    async def publish_many(
        self, items: list[tuple[str, bytes, str | None]], *, strict: bool = True
    ) -> None:
        """Reach every node that is up, or none (``redis_scripts.PUBLISH``, one script for
        all ``items``): raises ``BrokerUnavailable`` when a node that is up has not confirmed
        its subscriptions yet (it reconnects after a Redis restart), and then nothing was
        published — unless not ``strict``: then it is published to the nodes that can take
        it anyway."""
        if not items:
            return
        k = self.keys
        args: list[str | bytes | int] = [k.hb_prefix, k.ready_prefix, k.inbox_prefix]
        args += ["1" if strict else "0", len(items)]
        for topic, payload, exclude in items:
            excl = b"" if exclude is None else b"=" + exclude.encode()
            args += [k.channel(topic), pack(self._node_b, excl, payload)]
        args += self.expected()
        [missing] = await self._call([script("publish", [k.nodes], args)])
        if missing == 0:
            self._expected.clear()
            return
        not_ready = {n.decode() for n in missing}
        self._expected.intersection_update(not_ready)
        if not strict:
            return  # published to the others; the late nodes miss it (best effort)
        raise BrokerUnavailable(
            f"node(s) {', '.join(sorted(not_ready))} not resubscribed yet; nothing was published"
        )

    # -- requests ----------------------------------------------------------------------------

    async def request(self, node_id: str, body: bytes, timeout: float) -> bytes:
        if node_id == self.node_id:
            return await self._ask_self(body, timeout)
        [alive] = await self._call([("EXISTS", self.keys.hb(node_id))])
        if not alive:
            raise LookupError(f"no live node {node_id}")
        return await self._ask(node_id, body, timeout)

    async def request_all(self, body: bytes, timeout: float) -> list[bytes]:
        # Not waited for: a node killed a moment ago (its heartbeat has not expired yet) is
        # no longer connected to Redis (issue 13).
        args = [self.keys.hb_prefix, "reachable", self.keys.inbox_prefix]
        [live] = await self._call([script("nodes", [self.keys.nodes], args)])
        ids = {n.decode() for n in live} | {self.node_id}
        asks = [
            self._ask_self(body, timeout) if n == self.node_id else self._ask(n, body, timeout)
            for n in ids
        ]
        return list(await asyncio.gather(*asks))

    async def _ask_self(self, body: bytes, timeout: float) -> bytes:
        if self._inbox is None:
            raise LookupError(f"node {self.node_id} is closed")
        try:
            async with asyncio.timeout(timeout):
                return await self._inbox.on_request(body)
        except TimeoutError:
            raise NodeUnreachable(f"node {self.node_id} did not answer in {timeout} s") from None

    async def _ask(self, node_id: str, body: bytes, timeout: float) -> bytes:
        rid = secrets.token_bytes(8)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            async with asyncio.timeout(timeout):
                msg = pack(b"q", self._node_b, rid, body)
                [receivers] = await self._call([("PUBLISH", self.keys.inbox(node_id), msg)])
                if not receivers:
                    raise NodeUnreachable(f"node {node_id} is not listening")
                return await fut
        except TimeoutError:
            raise NodeUnreachable(f"node {node_id} did not answer in {timeout} s") from None
        finally:
            self._pending.pop(rid, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: the connection was lost before we awaited it

    async def _answer(self, origin: str, rid: bytes, body: bytes) -> None:
        kind, reply = b"a", b""
        try:
            if self._inbox is not None:
                reply = await self._inbox.on_request(body)
        except Exception as exc:
            log.exception("Redis broker: answering a request of node %s failed", origin)
            kind, reply = b"e", repr(exc).encode()
        self._fire([("PUBLISH", self.keys.inbox(origin), pack(kind, self._node_b, rid, reply))])

    # -- registry, counts, presence ----------------------------------------------------------

    def register(self, key: str) -> None:
        self._fire(self.keys.register(self.node_id, key))

    def unregister(self, key: str) -> None:
        self._fire([self.keys.release(self.node_id, key)])

    async def locate(self, key: str) -> str | None:
        [owner] = await self._call([script("locate", [self.keys.reg(key)], [self.keys.hb_prefix])])
        return owner.decode() if owner else None

    async def set_count(self, scope: str, channel: str, count: int) -> Transition | None:
        cmd, _ = self.keys.set_count(self.node_id, scope, channel, count)
        [reply] = await self._call([cmd])
        return count_transition(reply)

    async def count(self, scope: str, channel: str) -> int:
        keys = [self.keys.counts(scope, channel)]
        [total] = await self._call([script("count", keys, [self.keys.hb_prefix])])
        return int(total)

    async def channels(self, scope: str, prefix: str = "") -> dict[str, int]:
        lo, hi = (
            (b"[" + prefix.encode(), b"[" + prefix.encode() + b"\xff") if prefix else ("-", "+")
        )
        args = [self.keys.hb_prefix, lo, hi, self.keys.counts_head(scope), "}"]
        [flat] = await self._call([script("channels", [self.keys.chans(scope)], args)])
        return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def presence_join(
        self, scope: str, channel: str, user_key: str, member: bytes
    ) -> Transition | None:
        cmd, _ = self.keys.join(self.node_id, scope, channel, user_key, member)
        [reply] = await self._call([cmd])
        return Transition.MEMBER_ADDED if reply == 1 else None

    async def presence_leave(self, scope: str, channel: str, user_key: str) -> Transition | None:
        cmd, _ = self.keys.leave(self.node_id, scope, channel, user_key)
        [reply] = await self._call([cmd])
        return Transition.MEMBER_REMOVED if isinstance(reply, list) else None

    async def presence_members(self, scope: str, channel: str) -> dict[str, bytes]:
        keys = [self.keys.members(scope, channel), self.keys.holders(scope, channel)]
        [flat] = await self._call([script("members", keys, [self.keys.hb_prefix])])
        return {flat[i].decode(): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def _send_subscribe(self, keys: list[str], ready: bool = False) -> None:
        """Subscribe ``keys`` and wait for Redis's confirmations; with ``ready`` then the
        node's ready channel: from then on publications wait for nothing of this node."""
        if self._pubsub is None:
            return
        loop = asyncio.get_running_loop()
        channels = [self.keys.channel(key) for key in keys if not key.endswith("*")]
        patterns = [self.keys.channel(key) for key in keys if key.endswith("*")]
        acks = [
            self._acks.setdefault(c.encode(), loop.create_future()) for c in channels + patterns
        ]
        if channels:
            await self._pubsub.subscribe(*channels)
        if patterns:
            await self._pubsub.psubscribe(*patterns)
        async with asyncio.timeout(SOCKET_TIMEOUT_S):
            await asyncio.gather(*acks)
        self._confirmed.update(keys)
        if ready:
            channel = self.keys.ready(self.node_id)
            ack = self._acks.setdefault(channel.encode(), loop.create_future())
            await self._pubsub.subscribe(channel)
            async with asyncio.timeout(SOCKET_TIMEOUT_S):
                await ack

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind, channel = msg["type"], msg["channel"]
        if kind in ("subscribe", "psubscribe"):
            ack = self._acks.pop(channel, None)
            if ack is not None and not ack.done():
                ack.set_result(None)
            return
        if kind == "message" and channel == self._inbox_ch:
            return self._on_inbox(msg["data"])
        prefix = self.keys.topic_prefix
        if kind == "message":
            key: str | None = channel[len(prefix) :].decode()
        elif kind == "pmessage":
            key = self._patterns.get(msg["pattern"])
        else:
            return
        if key is None or key not in self._subs or self._inbox is None:
            return
        origin, excl, payload = unpack(msg["data"])
        if origin != self._node_b:
            exclude = excl[1:].decode() if excl else None
            self._inbox.on_publication(key, channel[len(prefix) :].decode(), payload, exclude)

    def _on_inbox(self, data: bytes) -> None:
        kind, origin, rid, body = unpack(data)
        if kind == b"q":
            task = asyncio.create_task(self._answer(origin.decode(), rid, body))
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)
            return
        fut = self._pending.get(rid)
        if fut is not None and not fut.done():
            if kind == b"a":
                fut.set_result(body)
            else:
                fut.set_exception(RuntimeError(f"node {origin.decode()} failed: {body.decode()}"))
