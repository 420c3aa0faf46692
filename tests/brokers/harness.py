"""Test nodes for the broker contract suite (issue 6): a broker plus what its gateway keeps.

``Node`` records what a gateway would (its share, for ``Inbox.snapshot()``) and forwards to
the broker; ``RecordingInbox`` records what the broker delivers. ``RedisServer`` runs a
private ``redis-server`` on an ephemeral port for tests that stop or restart Redis.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sockway.brokers.base import Change, NodeState, Transition
from sockway.brokers.memory import MemoryBroker, MemoryBus
from sockway.brokers.redis import RedisBroker
from sockway.brokers.redis_share import Keys

GRACE_S = 0.4
HEARTBEAT_S = 0.1
NODE_TTL_S = 0.6


class RecordingInbox:
    def __init__(self, name: str) -> None:
        self.name = name
        self.publications: list[tuple[str, str, bytes, str | None]] = []
        self.orphaned: list[list[Change]] = []
        self.state = NodeState()

    def on_publication(self, key: str, topic: str, payload: bytes, exclude: str | None) -> None:
        self.publications.append((key, topic, payload, exclude))

    async def on_request(self, body: bytes) -> bytes:
        if body == b"slow":
            await asyncio.Event().wait()  # a node that never answers
        return self.name.encode() + b":" + body

    def on_orphaned(self, changes: list[Change]) -> None:
        self.orphaned.append(list(changes))

    def snapshot(self) -> NodeState:
        return copy.deepcopy(self.state)

    def payloads(self) -> list[bytes]:
        return [p for _, _, p, _ in self.publications]


class Node:
    """One gateway node: keeps its share like the real node does, then calls the broker."""

    def __init__(self, broker: Any, inbox: RecordingInbox) -> None:
        self.broker, self.inbox, self.state = broker, inbox, inbox.state

    @property
    def id(self) -> str:
        return str(self.broker.node_id)

    def subscribe(self, key: str) -> None:
        self.state.subscriptions.add(key)
        self.broker.subscribe(key)

    def unsubscribe(self, key: str) -> None:
        self.state.subscriptions.discard(key)
        self.broker.unsubscribe(key)

    def register(self, key: str) -> None:
        self.state.registered.add(key)
        self.broker.register(key)

    def unregister(self, key: str) -> None:
        self.state.registered.discard(key)
        self.broker.unregister(key)

    async def set_count(self, scope: str, channel: str, n: int) -> Transition | None:
        if n:
            self.state.counts[(scope, channel)] = n
        else:
            self.state.counts.pop((scope, channel), None)
        result: Transition | None = await self.broker.set_count(scope, channel, n)
        return result

    async def join(self, scope: str, channel: str, user: str, member: bytes) -> Transition | None:
        self.state.presence.setdefault((scope, channel, user), member)
        result: Transition | None = await self.broker.presence_join(scope, channel, user, member)
        return result

    async def leave(self, scope: str, channel: str, user: str) -> Transition | None:
        self.state.presence.pop((scope, channel, user), None)
        result: Transition | None = await self.broker.presence_leave(scope, channel, user)
        return result

    async def settle(self) -> None:
        """Every earlier call of this node has taken effect (an awaited op is queued after
        them; the memory broker applies them at once)."""
        await self.broker.count("settle", "settle")


class Cluster:
    """Nodes of one gateway: MemoryBrokers on one bus, or RedisBrokers on one key prefix."""

    def __init__(
        self, kind: str, redis_url: str | list[str] = "", prefix: str = "", **redis_opts: Any
    ):
        """``redis_url``: one URL, or several that the nodes take in turn (a Redis Cluster's
        nodes: each broker finds the primary of its keys from wherever it starts)."""
        urls = [redis_url] if isinstance(redis_url, str) else redis_url
        self.kind, self.urls, self.redis_url, self.prefix = kind, urls, urls[0], prefix
        self.redis_opts = {"heartbeat_s": HEARTBEAT_S, "node_ttl_s": NODE_TTL_S} | redis_opts
        self.bus = MemoryBus()
        self.nodes: list[Node] = []

    async def node(self, name: str) -> Node:
        broker: Any
        if self.kind == "memory":
            broker = MemoryBroker(self.bus, grace_s=GRACE_S)
        else:
            broker = RedisBroker(
                self.urls[len(self.nodes) % len(self.urls)],
                key_prefix=self.prefix,
                unsubscribe_grace_s=GRACE_S,
                **self.redis_opts,
            )
        inbox = RecordingInbox(name)
        await broker.start(inbox)
        node = Node(broker, inbox)
        self.nodes.append(node)
        return node

    async def crash(self, node: Node) -> None:
        self.nodes.remove(node)
        result = node.broker.crash()
        if inspect.isawaitable(result):
            await result

    async def close(self) -> None:
        for node in self.nodes:
            await node.broker.close()
        self.nodes.clear()
        if self.kind == "redis" and "sentinel_master" not in self.redis_opts:  # leaves P:epoch
            raw = Redis.from_url(self.redis_url, socket_timeout=1)
            try:
                await raw.delete(Keys(self.prefix).epoch)
            except RedisError:
                pass  # the test stopped this Redis (or, on a Cluster, another node has it)
            finally:
                await raw.aclose()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``check`` until true (deliveries have no event to await from outside)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
