"""The Redis broker's delivery guarantee (issue 13, docs/brokers.md "Delivery guarantee"): a
strict publication reaches every node that is up or none, and a node counts as ready only
once it listens on its ready channel (subscribed last, after its other subscriptions)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from sockway.brokers.base import BrokerUnavailable
from sockway.brokers.redis_share import Keys
from tests.brokers.harness import Cluster, eventually


async def test_a_node_still_resubscribing_holds_strict_publications(
    redis_url: str, prefix: str
) -> None:
    cluster = Cluster("redis", redis_url, prefix)
    keys = Keys(prefix)
    raw = Redis.from_url(redis_url)
    late = raw.pubsub()
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        for topic in ("t1", "t2"):
            b.subscribe(topic)
        await b.settle()
        # A third node in the middle of its session's start: live (heartbeat), connected
        # (inbox subscribed), its subscriptions not confirmed yet (no ready channel).
        await raw.sadd(keys.nodes, "late")
        await raw.set(keys.hb("late"), "1", px=60_000)
        await late.subscribe(keys.inbox("late"))
        await late.get_message(timeout=1)
        with pytest.raises(BrokerUnavailable, match="late"):
            await a.broker.publish_many([("t1", b"one", None), ("t2", b"two", None)])
        with pytest.raises(BrokerUnavailable):
            await a.broker.publish("t1", b"single")
        # Best effort: published to the nodes that can take it.
        await a.broker.publish("t2", b"best effort", strict=False)
        await eventually(lambda: b.inbox.payloads() == [b"best effort"])
        # Ready: both go out, all together.
        await late.subscribe(keys.ready("late"))
        await late.get_message(timeout=1)
        await a.broker.publish_many([("t1", b"one", None), ("t2", b"two", None)])
        await eventually(lambda: b.inbox.payloads() == [b"best effort", b"one", b"two"])
        # A node connected no more (killed) is not waited for, though its heartbeat lives.
        await late.aclose()
        while (await raw.pubsub_numsub(keys.inbox("late")))[0][1]:  # Redis saw it go
            await asyncio.sleep(0.01)
        await a.broker.publish("t1", b"after")
        await eventually(lambda: b.inbox.payloads()[-1:] == [b"after"])
        assert sorted(await a.broker.request_all(b"?", 2)) == [b"a:?", b"b:?"]
    finally:
        await raw.delete(keys.hb("late"))
        await raw.srem(keys.nodes, "late")
        await raw.aclose()
        await cluster.close()
