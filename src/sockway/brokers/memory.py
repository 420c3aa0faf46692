"""The embedded broker: nodes in one process sharing a ``MemoryBus`` (the default).

A gateway started without a ``broker`` setting gets a bus of its own, so it is a cluster of
one: publications reach no other node and cost nothing. Tests put several nodes on one bus to
run the same contract suite as the Redis broker (``tests/brokers``). Everything happens in the
event loop; deliveries to other nodes are scheduled with ``call_soon`` so, as over a network,
``publish`` returns before the other nodes see the publication.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from sockway.brokers.base import (
    DEFAULT_UNSUBSCRIBE_GRACE_S,
    Change,
    Inbox,
    NodeUnreachable,
    Transition,
)

_ids = itertools.count(1)


@dataclass
class _Presence:
    members: dict[str, bytes] = field(default_factory=dict)  # user_key → member document
    holders: dict[str, set[str]] = field(default_factory=dict)  # user_key → node ids


class MemoryBus:
    """The shared state of the nodes of one process."""

    def __init__(self) -> None:
        self.nodes: dict[str, MemoryBroker] = {}
        self.registry: dict[str, str] = {}  # key → node id
        self.counts: dict[tuple[str, str], dict[str, int]] = {}  # (scope, channel) → node → n
        self.presence: dict[tuple[str, str], _Presence] = {}

    def remove_node(self, node_id: str) -> list[Change]:
        """Drop everything ``node_id`` contributed; the transitions this caused."""
        self.nodes.pop(node_id, None)
        for key in [k for k, owner in self.registry.items() if owner == node_id]:
            del self.registry[key]
        changes: list[Change] = []
        for scope, channel in list(self.counts):
            if self._set_count(scope, channel, node_id, 0) is Transition.VACATED:
                changes.append(Change(Transition.VACATED, scope, channel))
        for (scope, channel), pres in list(self.presence.items()):
            for user_key, holders in list(pres.holders.items()):
                if node_id in holders:
                    member = pres.members.get(user_key)
                    if self._leave(scope, channel, user_key, node_id):
                        changes.append(
                            Change(Transition.MEMBER_REMOVED, scope, channel, user_key, member)
                        )
        return changes

    def _set_count(self, scope: str, channel: str, node_id: str, count: int) -> Transition | None:
        per_node = self.counts.get((scope, channel))
        before = bool(per_node)
        if count > 0:
            self.counts.setdefault((scope, channel), {})[node_id] = count
        elif per_node is not None:
            per_node.pop(node_id, None)
            if not per_node:
                del self.counts[(scope, channel)]
        after = bool(self.counts.get((scope, channel)))
        if after and not before:
            return Transition.OCCUPIED
        if before and not after:
            return Transition.VACATED
        return None

    def _leave(self, scope: str, channel: str, user_key: str, node_id: str) -> bool:
        pres = self.presence.get((scope, channel))
        if pres is None or node_id not in pres.holders.get(user_key, ()):
            return False
        holders = pres.holders[user_key]
        holders.discard(node_id)
        if holders:
            return False
        del pres.holders[user_key]
        pres.members.pop(user_key, None)
        if not pres.holders:
            del self.presence[(scope, channel)]
        return True


class MemoryBroker:
    """One node on a ``MemoryBus`` (see ``brokers.base.Broker`` for the contract)."""

    def __init__(
        self, bus: MemoryBus | None = None, *, grace_s: float = DEFAULT_UNSUBSCRIBE_GRACE_S
    ) -> None:
        self.bus = bus or MemoryBus()
        self.node_id = f"mem-{next(_ids)}"
        self.grace_s = grace_s
        self.subscriptions: set[str] = set()
        self._pending_unsubscribe: dict[str, asyncio.TimerHandle] = {}
        self._inbox: Inbox | None = None

    @property
    def available(self) -> bool:
        return True

    async def start(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self.bus.nodes[self.node_id] = self

    async def close(self) -> None:
        for handle in self._pending_unsubscribe.values():
            handle.cancel()
        self._pending_unsubscribe.clear()
        self.bus.remove_node(self.node_id)
        self._inbox = None

    def crash(self) -> list[Change]:
        """Simulate the node dying: it vanishes and a surviving node cleans up after it."""
        self._inbox = None
        changes = self.bus.remove_node(self.node_id)
        survivor = next(iter(self.bus.nodes.values()), None)
        if survivor is not None and survivor._inbox is not None and changes:
            survivor._inbox.on_orphaned(changes)
        return changes

    # -- publications ------------------------------------------------------------------------

    def subscribe(self, key: str) -> None:
        pending = self._pending_unsubscribe.pop(key, None)
        if pending is not None:
            pending.cancel()
        self.subscriptions.add(key)

    def unsubscribe(self, key: str) -> None:
        if key not in self.subscriptions or key in self._pending_unsubscribe:
            return
        loop = asyncio.get_running_loop()
        self._pending_unsubscribe[key] = loop.call_later(self.grace_s, self._drop, key)

    async def subscribed(self, key: str, timeout: float) -> None:
        return  # subscriptions take effect at once on the bus

    def _drop(self, key: str) -> None:
        self._pending_unsubscribe.pop(key, None)
        self.subscriptions.discard(key)

    async def publish(
        self, topic: str, payload: bytes, exclude: str | None = None, *, strict: bool = True
    ) -> None:
        loop = asyncio.get_running_loop()
        for node in self.bus.nodes.values():
            if node is self or node._inbox is None:
                continue
            for key in node.subscriptions:
                if key == topic or (key.endswith("*") and topic.startswith(key[:-1])):
                    loop.call_soon(node._deliver, key, topic, payload, exclude)

    async def publish_many(
        self, items: list[tuple[str, bytes, str | None]], *, strict: bool = True
    ) -> None:
        """One after the other (a memory bus never fails part-way: all reach the others)."""
        for topic, payload, exclude in items:
            await self.publish(topic, payload, exclude, strict=strict)

    def _deliver(self, key: str, topic: str, payload: bytes, exclude: str | None) -> None:
        if self._inbox is not None and key in self.subscriptions:
            self._inbox.on_publication(key, topic, payload, exclude)

    # -- requests ----------------------------------------------------------------------------

    async def request(self, node_id: str, body: bytes, timeout: float) -> bytes:
        node = self.bus.nodes.get(node_id)
        if node is None or node._inbox is None:
            raise LookupError(f"no live node {node_id}")
        try:
            async with asyncio.timeout(timeout):
                return await node._inbox.on_request(body)
        except TimeoutError:
            raise NodeUnreachable(f"node {node_id} did not answer in {timeout} s") from None

    async def request_all(self, body: bytes, timeout: float) -> list[bytes]:
        ids = [n for n, node in self.bus.nodes.items() if node._inbox is not None]
        return list(await asyncio.gather(*(self.request(n, body, timeout) for n in ids)))

    # -- registry ----------------------------------------------------------------------------

    def register(self, key: str) -> None:
        self.bus.registry[key] = self.node_id

    def unregister(self, key: str) -> None:
        if self.bus.registry.get(key) == self.node_id:
            del self.bus.registry[key]

    async def locate(self, key: str) -> str | None:
        return self.bus.registry.get(key)

    # -- counts ------------------------------------------------------------------------------

    async def set_count(self, scope: str, channel: str, count: int) -> Transition | None:
        return self.bus._set_count(scope, channel, self.node_id, count)

    async def count(self, scope: str, channel: str) -> int:
        return sum(self.bus.counts.get((scope, channel), {}).values())

    async def channels(self, scope: str, prefix: str = "") -> dict[str, int]:
        return {
            channel: sum(per_node.values())
            for (s, channel), per_node in self.bus.counts.items()
            if s == scope and channel.startswith(prefix)
        }

    # -- presence ----------------------------------------------------------------------------

    async def presence_join(
        self, scope: str, channel: str, user_key: str, member: bytes
    ) -> Transition | None:
        pres = self.bus.presence.setdefault((scope, channel), _Presence())
        holders = pres.holders.setdefault(user_key, set())
        added = not holders
        holders.add(self.node_id)
        if added:
            pres.members[user_key] = member
            return Transition.MEMBER_ADDED
        return None

    async def presence_leave(self, scope: str, channel: str, user_key: str) -> Transition | None:
        if self.bus._leave(scope, channel, user_key, self.node_id):
            return Transition.MEMBER_REMOVED
        return None

    async def presence_members(self, scope: str, channel: str) -> dict[str, bytes]:
        pres = self.bus.presence.get((scope, channel))
        return dict(pres.members) if pres is not None else {}
