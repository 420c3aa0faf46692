"""The Redis broker: nodes of one gateway share a Redis (issue 6; contract in ``brokers/base``).

``RedisBroker(url, key_prefix=..., heartbeat_s=..., node_ttl_s=..., unsubscribe_grace_s=...,
sentinel_master=None)``. Key layout: ``brokers/redis_share``; Lua: ``brokers/redis_scripts``.

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
- **Cluster** is not supported: redis-py asyncio's ``RedisCluster`` has no pub/sub, and the
  scripts touch a node index and a per-scope channel index beside the channel's keys. A
  channel's keys already share a hash tag, so a Cluster port would mainly move those indexes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from sockway.brokers import redis_scripts
from sockway.brokers.base import (
    DEFAULT_UNSUBSCRIBE_GRACE_S,
    BrokerUnavailable,
    Change,
    Inbox,
    NodeState,
    NodeUnreachable,
    Transition,
)
from sockway.brokers.redis_share import (
    Cmd,
    Keys,
    Step,
    count_transition,
    decode_set,
    entry,
    pack,
    parse_orphans,
    script,
    unpack,
)

log = logging.getLogger("sockway.broker")

SOCKET_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 0.5
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.05, 2.0
PIPELINE_MAX = 500  # commands per pipeline round trip
# Errors meaning "this connection/server is not usable": end the session and reconnect.
_DOWN = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, NoScriptError, OSError)


@dataclass
class _Op:  # commands pipelined by the writer; fut gets their replies (None: fire and forget)
    cmds: list[Cmd]
    fut: asyncio.Future[list[Any]] | None


@dataclass
class _Job:  # a coroutine run alone by the writer (resync, subscribe, leave)
    fn: Callable[[Redis], Awaitable[Any]]
    fut: asyncio.Future[Any] | None


async def _exec(client: Redis, cmd: Cmd) -> Any:
    return await client.execute_command(*cmd)  # type: ignore[no-untyped-call]


class RedisBroker:
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
        self.url, self.sentinel_master = url, sentinel_master
        self.keys = Keys(key_prefix)
        self.heartbeat_s, self.node_ttl_s, self.grace_s = (
            heartbeat_s,
            node_ttl_s,
            unsubscribe_grace_s,
        )
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._node_b = self.node_id.encode()
        self._inbox_ch = self.keys.inbox(self.node_id).encode()
        self._subs: set[str] = set()
        self._patterns: dict[bytes, str] = {}  # PSUBSCRIBE pattern → subscription key
        self._grace: dict[str, asyncio.TimerHandle] = {}
        self._queue: deque[_Op | _Job] = deque()
        self._inflight: list[_Op | _Job] = []
        self._wake = asyncio.Event()
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}  # reply id → answer
        self._acks: dict[bytes, asyncio.Future[None]] = {}  # channel → subscribe confirmation
        self._answers: set[asyncio.Task[None]] = set()
        self._hb_lock = asyncio.Lock()
        self._inbox: Inbox | None = None
        self._pubsub: PubSub | None = None
        self._epoch: bytes | None = None
        self._available = self._closing = self._closed = self._session_up = False
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
                    await self._submit(
                        _Job(self._leave, asyncio.get_running_loop().create_future())
                    )
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

    def _drop(self, key: str) -> None:
        self._grace.pop(key, None)
        self._subs.discard(key)
        channel = self.keys.channel(key)
        self._patterns.pop(channel.encode(), None)

        async def send(_: Redis) -> None:
            if self._pubsub is not None:
                sender = (
                    self._pubsub.punsubscribe if key.endswith("*") else self._pubsub.unsubscribe
                )
                await sender(channel)

        self._fire_job(send)

    async def publish(self, topic: str, payload: bytes, exclude: str | None = None) -> None:
        excl = b"" if exclude is None else b"=" + exclude.encode()
        await self._call([("PUBLISH", self.keys.channel(topic), pack(self._node_b, excl, payload))])

    # -- requests ----------------------------------------------------------------------------

    async def request(self, node_id: str, body: bytes, timeout: float) -> bytes:
        if node_id == self.node_id:
            return await self._ask_self(body, timeout)
        [alive] = await self._call([("EXISTS", self.keys.hb(node_id))])
        if not alive:
            raise LookupError(f"no live node {node_id}")
        return await self._ask(node_id, body, timeout)

    async def request_all(self, body: bytes, timeout: float) -> list[bytes]:
        [live] = await self._call(
            [script("nodes", [self.keys.nodes], [self.keys.hb_prefix, "live"])]
        )
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

    # -- the writer: every command of this node, in call order -------------------------------

    async def _call(self, cmds: list[Cmd]) -> list[Any]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        return await self._submit(_Op(cmds, fut))  # type: ignore[no-any-return]

    async def _submit(self, item: _Op | _Job) -> Any:
        if not self._available:
            raise BrokerUnavailable("Redis broker is unavailable")
        self._queue.append(item)
        self._wake.set()
        assert item.fut is not None
        return await item.fut

    def _fire(self, cmds: list[Cmd]) -> None:
        if self._available:  # else dropped: the resync after reconnecting covers it
            self._queue.append(_Op(cmds, None))
            self._wake.set()

    def _fire_job(self, fn: Callable[[Redis], Awaitable[Any]]) -> None:
        if self._available:
            self._queue.append(_Job(fn, None))
            self._wake.set()

    async def _write(self, client: Redis) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            self._inflight = [item]
            if isinstance(item, _Job):
                try:
                    result = await item.fn(client)
                except _DOWN:
                    raise
                except Exception as exc:
                    if item.fut is None:
                        log.exception("Redis broker: background job failed")
                    elif not item.fut.done():
                        item.fut.set_exception(exc)
                else:
                    if item.fut is not None and not item.fut.done():
                        item.fut.set_result(result)
                self._inflight = []
                continue
            while (
                self._queue
                and isinstance(self._queue[0], _Op)
                and len(self._inflight) < PIPELINE_MAX
            ):
                self._inflight.append(self._queue.popleft())
            ops = [op for op in self._inflight if isinstance(op, _Op)]
            replies = await self._pipeline(client, [c for op in ops for c in op.cmds])
            for op in ops:
                part, replies = replies[: len(op.cmds)], replies[len(op.cmds) :]
                errors = [r for r in part if isinstance(r, Exception)]
                if op.fut is None:
                    if errors:
                        log.error("Redis broker: %s failed: %r", op.cmds[0][0], errors[0])
                elif op.fut.done():
                    pass
                elif errors:
                    op.fut.set_exception(errors[0])
                else:
                    op.fut.set_result(part)
            self._inflight = []

    async def _pipeline(self, client: Redis, cmds: list[Cmd]) -> list[Any]:
        replies: list[Any] = []
        for i in range(0, len(cmds), PIPELINE_MAX):
            pipe = client.pipeline(transaction=False)
            for cmd in cmds[i : i + PIPELINE_MAX]:
                pipe.execute_command(*cmd)
            replies += await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, _DOWN):
                raise reply
        return replies

    async def _run_steps(self, client: Redis, steps: list[Step]) -> list[Change]:
        replies = await self._pipeline(client, [cmd for cmd, _ in steps])
        changes = []
        for (_, parse), reply in zip(steps, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            change = parse(reply) if parse is not None else None
            if change is not None:
                changes.append(change)
        return changes

    # -- session: connect, resync, run until the connection fails ----------------------------

    def _client(self) -> Redis:
        opts: dict[str, Any] = {
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.sentinel_master is None:
            return Redis.from_url(self.url, **opts)
        rest = self.url.split("://", 1)[-1]
        auth, _, rest = rest.rpartition("@")
        hosts, _, db = rest.partition("/")
        user, _, password = auth.partition(":") if auth else ("", "", "")
        sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts.split(",")]
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels,
            sentinel_kwargs=dict(opts),
            username=user or None,
            password=password or None,
            db=int(db or 0),
            **opts,
        )
        return sentinel.master_for(self.sentinel_master)  # type: ignore[no-any-return]

    async def _supervise(self) -> None:
        delay, quiet = BACKOFF_MIN_S, False
        while not self._closed:
            self._session_up = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (*_DOWN, TimeoutError) as exc:
                (log.debug if quiet else log.warning)("Redis broker unavailable: %r", exc)
            except Exception:
                log.exception("Redis broker session failed")
            if self._session_up:
                delay = BACKOFF_MIN_S
            quiet = not self._session_up
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _session(self) -> None:
        client, pubsub, tasks = self._client(), None, []
        try:
            async with asyncio.timeout(3 * SOCKET_TIMEOUT_S):
                for src in redis_scripts.ALL.values():
                    await client.script_load(src)
                await client.set(self.keys.epoch, secrets.token_hex(8), nx=True)
                epoch = await _exec(client, ("GET", self.keys.epoch))
                deliver, self._epoch = self._epoch in (None, epoch), epoch
                await self._beat(client)
                pubsub = client.pubsub()
                await pubsub.subscribe(self._inbox_ch)
            self._pubsub = pubsub
            tasks = [
                asyncio.create_task(self._read(pubsub)),
                asyncio.create_task(self._write(client)),
                asyncio.create_task(self._heartbeat(client)),
            ]
            # Everything called from here on is queued after the resubscribe and the resync.
            self._queue.append(_Job(lambda _: self._send_subscribe(sorted(self._subs)), None))
            self._queue_resync(deliver, force=True)
            self._available = self._session_up = True
            self._up.set()
            log.info("Redis broker connected as node %s", self.node_id)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise RedisConnectionError("a broker task ended")
        finally:
            self._go_down()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pubsub = None
            with contextlib.suppress(Exception):
                if pubsub is not None:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await client.aclose()

    def _go_down(self) -> None:
        self._available = False
        self._up.clear()
        for item in [*self._inflight, *self._queue]:
            if item.fut is not None and not item.fut.done():
                item.fut.set_exception(BrokerUnavailable("Redis broker connection lost"))
        self._inflight = []
        self._queue.clear()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BrokerUnavailable("Redis broker connection lost"))
        for ack in self._acks.values():
            ack.cancel()
        self._acks.clear()

    def _queue_resync(self, deliver: bool, force: bool = False) -> None:
        if self._inbox is not None and (self._available or force):
            snapshot = self._inbox.snapshot()  # taken now: later calls are queued after the job
            self._queue.append(_Job(lambda c: self._resync(c, snapshot, deliver), None))
            self._wake.set()

    async def _resync(self, client: Redis, snap: NodeState, deliver: bool) -> None:
        """Rewrite this node's share from ``snap``, removing stale entries of its own."""
        k, node = self.keys, self.node_id
        reg, cnt, pres = map(
            decode_set,
            await self._pipeline(
                client, [("SMEMBERS", k.index(node, x)) for x in ("reg", "cnt", "pres")]
            ),
        )
        want_cnt = {entry(s, c) for s, c in snap.counts}
        want_pres = {entry(s, c, u) for s, c, u in snap.presence}
        steps = k.removals(
            node, reg - snap.registered, cnt - want_cnt, pres - want_pres, dead=False
        )
        steps += [(cmd, None) for key in snap.registered for cmd in k.register(node, key)]
        steps += [k.set_count(node, s, c, n) for (s, c), n in snap.counts.items()]
        steps += [k.join(node, s, c, u, m) for (s, c, u), m in snap.presence.items()]
        changes = await self._run_steps(client, steps)
        if changes and deliver:
            self._orphaned(changes)
        elif changes:
            log.info("Redis broker: Redis lost its data; %d transitions not reported", len(changes))

    async def _send_subscribe(self, keys: list[str]) -> None:
        if self._pubsub is None or not keys:
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

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            msg = await pubsub.get_message(timeout=SOCKET_TIMEOUT_S)
            if msg is not None:
                try:
                    self._dispatch(msg)
                except Exception:
                    log.exception("Redis broker: handling a pub/sub message failed")

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

    # -- liveness ----------------------------------------------------------------------------

    async def _beat(self, client: Redis) -> bool:
        keys = [self.keys.hb(self.node_id), self.keys.nodes]
        ttl_ms = int(self.node_ttl_s * 1000)
        return bool(await _exec(client, script("heartbeat", keys, [self.node_id, ttl_ms])))

    async def _heartbeat(self, client: Redis) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            async with self._hb_lock:
                if self._closing:
                    await asyncio.Event().wait()  # close() is removing this node; stay quiet
                if not await self._beat(client):
                    log.warning("Redis broker: heartbeat of %s had expired; resync", self.node_id)
                    self._queue_resync(deliver=True)
                await self._sweep(client)

    async def _sweep(self, client: Redis) -> None:
        dead = await _exec(
            client, script("nodes", [self.keys.nodes], [self.keys.hb_prefix, "dead"])
        )
        for raw in dead:
            node = raw.decode()
            if node != self.node_id:
                changes = await self._clean(client, node)
                if changes:
                    log.info(
                        "Redis broker: removed dead node %s (%d transitions)", node, len(changes)
                    )
                    self._orphaned(changes)

    async def _clean(self, client: Redis, node: str) -> list[Change]:
        """Remove the share of ``node`` (dead, or this one closing); its transitions."""
        lock_ms = int(max(self.node_ttl_s, 1.0) * 2000)
        if not await client.set(self.keys.lock(node), self.node_id, nx=True, px=lock_ms):
            return []  # another node is sweeping it
        idx = [("SMEMBERS", self.keys.index(node, x)) for x in ("reg", "cnt", "pres")]
        reg, cnt, pres = map(decode_set, await self._pipeline(client, idx))
        await self._run_steps(client, self.keys.removals(node, reg, cnt, pres, dead=True))
        return parse_orphans(await _exec(client, self.keys.finish(node)))

    async def _leave(self, client: Redis) -> None:
        async with self._hb_lock:
            self._closing = True
        await self._pipeline(
            client, [("SREM", self.keys.nodes, self.node_id), ("DEL", self.keys.hb(self.node_id))]
        )
        await self._clean(client, self.node_id)

    def _orphaned(self, changes: list[Change]) -> None:
        if self._inbox is not None:
            try:
                self._inbox.on_orphaned(changes)
            except Exception:
                log.exception("Redis broker: Inbox.on_orphaned failed")
