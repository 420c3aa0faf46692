"""The Redis broker's connection machinery (``brokers/redis.py`` has the contract side; issue 6).

One *session* is one connection to Redis: scripts loaded, heartbeat written, pub/sub connected,
then the writer (this node's commands in call order, pipelined), the reader (pub/sub) and the
heartbeat/sweep tasks run until any of them finds the connection broken. The supervisor then
fails everything queued with ``BrokerUnavailable`` and reconnects with exponential backoff;
each new session first resubscribes and rewrites this node's share (``_resync``).
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
from redis.exceptions import ConnectionError as RedisConnectionError

from sockway.brokers import redis_scripts
from sockway.brokers.base import BrokerUnavailable, Change, Inbox, NodeState
from sockway.brokers.redis_connect import DOWN, SOCKET_TIMEOUT_S, RedisLocator, execute
from sockway.brokers.redis_share import Cmd, Keys, Step, decode_set, entry, parse_orphans, script

log = logging.getLogger("sockway.broker")

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.05, 2.0
PIPELINE_MAX = 500  # commands per pipeline round trip
# Commands waiting for the writer: past it new ones are refused or dropped (``_full``). About
# ten seconds of the ~10k commands/s one node sends; tens of MB at most.
MAX_QUEUED = 100_000


@dataclass
class Op:  # commands pipelined by the writer; fut gets their replies (None: fire and forget)
    cmds: list[Cmd]
    fut: asyncio.Future[list[Any]] | None


@dataclass
class Job:  # a coroutine run alone by the writer (resync, subscribe, leave)
    fn: Callable[[Redis], Awaitable[Any]]
    fut: asyncio.Future[Any] | None


class RedisLink:
    """Connection, writer, reader, heartbeat and sweep of one node (base of ``RedisBroker``)."""

    def __init__(
        self,
        url: str,
        key_prefix: str,
        heartbeat_s: float,
        node_ttl_s: float,
        sentinel_master: str | None,
    ) -> None:
        self.keys = Keys(key_prefix)
        self._locator = RedisLocator(url, sentinel_master, self.keys.epoch)
        self.heartbeat_s, self.node_ttl_s = heartbeat_s, node_ttl_s
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._inbox_ch = self.keys.inbox(self.node_id).encode()
        self._subs: set[str] = set()
        self._queue: deque[Op | Job] = deque()
        self._inflight: list[Op | Job] = []
        self._wake = asyncio.Event()
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}  # reply id → answer
        self._acks: dict[bytes, asyncio.Future[None]] = {}  # channel → subscribe confirmation
        self._confirmed: set[str] = set()  # keys Redis confirmed in this session
        # Nodes seen live at the last heartbeat; after a new session starts, those of them
        # not back yet are still expected (``expected``) for ``node_ttl_s``: a publication
        # waits for them (issue 13: they may not have resubscribed after a Redis restart).
        self._peers: set[str] = set()
        self._expected: set[str] = set()
        self._expected_until = 0.0
        self._hb_lock = asyncio.Lock()
        self._inbox: Inbox | None = None
        self._pubsub: PubSub | None = None
        self._epoch: bytes | None = None
        self._shedding = self._resync_due = False  # see _full
        self._available = self._closing = self._closed = self._session_up = False
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- hooks of the broker -----------------------------------------------------------------

    def _dispatch(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _send_subscribe(self, keys: list[str], ready: bool = False) -> None:
        raise NotImplementedError

    def expected(self) -> list[str]:
        """Nodes seen live before this session that a publication still waits for."""
        if self._expected and asyncio.get_running_loop().time() > self._expected_until:
            self._expected.clear()  # not back within node_ttl_s: dead by the same rule
        return sorted(self._expected)

    # -- the writer: every command of this node, in call order -------------------------------

    async def _call(self, cmds: list[Cmd]) -> list[Any]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        return await self._submit(Op(cmds, fut))  # type: ignore[no-any-return]

    def _full(self) -> bool:
        """More than ``MAX_QUEUED`` commands wait for a Redis that answers too slowly: new ones
        are refused (awaited) or dropped (fire-and-forget: the share is rewritten once the
        queue has drained) instead of growing memory without bound."""
        if len(self._queue) < MAX_QUEUED:
            return False
        if not self._shedding:
            self._shedding = True
            log.warning(
                "Redis broker: %d commands waiting for Redis; refusing new ones until it "
                "catches up (this node's share is rewritten then)",
                len(self._queue),
            )
        return True

    async def _submit(self, item: Op | Job) -> Any:
        if not self._available:
            raise BrokerUnavailable("Redis broker is unavailable")
        if isinstance(item, Op) and self._full():
            raise BrokerUnavailable(f"Redis broker overloaded: {len(self._queue)} commands queued")
        self._queue.append(item)
        self._wake.set()
        assert item.fut is not None
        return await item.fut

    def _fire(self, cmds: list[Cmd]) -> None:
        if not self._available:
            return  # dropped: the resync after reconnecting covers it
        if self._full():
            self._resync_due = True  # dropped: rewritten from the snapshot once drained
            return
        self._queue.append(Op(cmds, None))
        self._wake.set()

    def _fire_job(self, fn: Callable[[Redis], Awaitable[Any]]) -> None:
        if self._available:
            self._queue.append(Job(fn, None))
            self._wake.set()

    async def _write(self, client: Redis) -> None:
        while True:
            if not self._queue and self._shedding:
                self._shedding = False
                if self._resync_due:
                    self._resync_due = False
                    self._queue_resync(deliver=True)
                log.info("Redis broker: caught up with the queued commands")
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            self._inflight = [item]
            if isinstance(item, Job):
                try:
                    result = await item.fn(client)
                except DOWN:
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
                and isinstance(self._queue[0], Op)
                and len(self._inflight) < PIPELINE_MAX
            ):
                self._inflight.append(self._queue.popleft())
            ops = [op for op in self._inflight if isinstance(op, Op)]
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
            if isinstance(reply, DOWN):
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

    async def _supervise(self) -> None:
        delay, quiet = BACKOFF_MIN_S, False
        while not self._closed:
            self._session_up = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (*DOWN, TimeoutError) as exc:
                (log.debug if quiet else log.warning)("Redis broker unavailable: %s", exc)
            except Exception:
                log.exception("Redis broker session failed")
            if self._session_up:
                delay = BACKOFF_MIN_S
            quiet = not self._session_up
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _session(self) -> None:
        client: Redis | None = None
        pubsub: PubSub | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.timeout(3 * SOCKET_TIMEOUT_S):
                client = await self._locator.connect()
                for src in redis_scripts.ALL.values():
                    await client.script_load(src)
                await client.set(self.keys.epoch, secrets.token_hex(8), nx=True)
                epoch = await execute(client, ("GET", self.keys.epoch))
                deliver, self._epoch = self._epoch in (None, epoch), epoch
                pubsub = client.pubsub()
                await pubsub.subscribe(self._inbox_ch)
                # Confirmed before the heartbeat: a live node is reachable at once.
                while (msg := await pubsub.get_message(timeout=SOCKET_TIMEOUT_S)) is None or (
                    msg["type"] != "subscribe"
                ):
                    pass
                await self._beat(client)
                live = await self._live(client)
            self._pubsub = pubsub
            # Those seen live before (this node's previous session) that are not back yet.
            self._expected = self._peers - live - {self.node_id}
            self._expected_until = asyncio.get_running_loop().time() + self.node_ttl_s
            self._peers = live | self._expected
            tasks = [
                asyncio.create_task(self._read(pubsub)),
                asyncio.create_task(self._write(client)),
                asyncio.create_task(self._heartbeat(client)),
            ]
            # Everything called from here on is queued after the resubscribe and the resync;
            # the ready channel is subscribed last (``redis_scripts.PUBLISH``).
            self._queue.append(
                Job(lambda _: self._send_subscribe(sorted(self._subs), ready=True), None)
            )
            self._queue_resync(deliver, force=True)
            self._available = self._session_up = True
            self._up.set()
            log.info("Redis broker connected as node %s", self.node_id)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled():
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
                if client is not None:
                    await client.aclose()

    def _go_down(self) -> None:
        self._available = False
        self._shedding = self._resync_due = False  # the next session rewrites the share anyway
        self._confirmed.clear()
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
            self._queue.append(Job(lambda c: self._resync(c, snapshot, deliver), None))
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

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            msg = await pubsub.get_message(timeout=SOCKET_TIMEOUT_S)
            if msg is not None:
                try:
                    self._dispatch(msg)
                except Exception:
                    log.exception("Redis broker: handling a pub/sub message failed")

    # -- liveness ----------------------------------------------------------------------------

    async def _beat(self, client: Redis) -> bool:
        keys = [self.keys.hb(self.node_id), self.keys.nodes]
        ttl_ms = int(self.node_ttl_s * 1000)
        return bool(await execute(client, script("heartbeat", keys, [self.node_id, ttl_ms])))

    async def _heartbeat(self, client: Redis) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            async with self._hb_lock:
                if self._closing:
                    await asyncio.Event().wait()  # close() is removing this node; stay quiet
                if not await self._beat(client):
                    log.warning("Redis broker: heartbeat of %s had expired; resync", self.node_id)
                    self._queue_resync(deliver=True)
                # Expected nodes stay known until back or expired (a session that ends again
                # before they are back still waits for them).
                self._peers = await self._live(client) | self._expected
                try:
                    await self._sweep(client)
                except DOWN:
                    raise
                except Exception:  # e.g. a script error on odd data: retried next beat
                    log.exception("Redis broker: sweeping dead nodes failed")

    async def _live(self, client: Redis) -> set[str]:
        live = await execute(
            client, script("nodes", [self.keys.nodes], [self.keys.hb_prefix, "live"])
        )
        return {n.decode() for n in live}

    async def _sweep(self, client: Redis) -> None:
        dead = await execute(
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
        return parse_orphans(await execute(client, self.keys.finish(node)))

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
