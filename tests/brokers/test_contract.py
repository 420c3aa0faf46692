"""The broker contract (``sockway.brokers.base``, issue 6), run against every broker.

``cluster`` gives nodes of one gateway: MemoryBrokers on one MemoryBus, or RedisBrokers on
one real Redis under one key prefix. Deliveries are checked with *markers*: a publication
sent after the ones under test, on the same connection, arrives after them, so once the
marker is in, anything else that was going to arrive has arrived.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sockway.brokers.base import Change, NodeUnreachable, Transition
from tests.brokers.harness import GRACE_S, HEARTBEAT_S, NODE_TTL_S, Cluster, Node, eventually

S = "apigw:chat"
ADDED, REMOVED = Transition.MEMBER_ADDED, Transition.MEMBER_REMOVED


async def settle(*nodes: Node) -> None:
    for node in nodes:
        await node.settle()


async def test_publish_reaches_each_matching_key_once_never_the_publisher(cluster: Cluster):
    a, b, c = [await cluster.node(n) for n in "abc"]
    for node in (a, b, c):
        node.subscribe("room.1")
    c.subscribe("room.*")  # c matches room.1 twice: by topic and by pattern
    await settle(a, b, c)

    await a.broker.publish("room.1", b"hi", "conn-9")
    await a.broker.publish("room.2", b"two")
    await a.broker.publish("room.1", b"end-a")
    await eventually(
        lambda: b"end-a" in b.inbox.payloads() and c.inbox.payloads().count(b"end-a") == 2
    )
    await b.broker.publish("room.1", b"end-b")  # after a's: a gets it after its own, if any
    await eventually(
        lambda: b"end-b" in a.inbox.payloads() and c.inbox.payloads().count(b"end-b") == 2
    )

    assert a.inbox.publications == [("room.1", "room.1", b"end-b", None)]
    assert b.inbox.publications == [
        ("room.1", "room.1", b"hi", "conn-9"),
        ("room.1", "room.1", b"end-a", None),
    ]
    assert sorted(c.inbox.publications) == sorted(
        [
            ("room.1", "room.1", b"hi", "conn-9"),
            ("room.*", "room.1", b"hi", "conn-9"),
            ("room.*", "room.2", b"two", None),
            ("room.1", "room.1", b"end-a", None),
            ("room.*", "room.1", b"end-a", None),
            ("room.1", "room.1", b"end-b", None),
            ("room.*", "room.1", b"end-b", None),
        ]
    )


async def test_pattern_prefix_is_taken_literally(cluster: Cluster):
    a, b = await cluster.node("a"), await cluster.node("b")
    for key in ("a[1]*", "q?*", "x\\y*", "end"):
        b.subscribe(key)
    await settle(b)
    topics = ["a1z", "a[1]z", "qz", "q?z", "xyz", "x\\yz", "x\\", "x\\y"]
    for topic in topics:
        await a.broker.publish(topic, topic.encode())
    await a.broker.publish("end", b"end")
    await eventually(lambda: b"end" in b.inbox.payloads())
    assert [(k, t) for k, t, _, _ in b.inbox.publications] == [
        ("a[1]*", "a[1]z"),
        ("q?*", "q?z"),
        ("x\\y*", "x\\yz"),
        ("x\\y*", "x\\y"),
        ("end", "end"),
    ]


async def test_unsubscribe_takes_effect_after_the_grace_period(cluster: Cluster):
    a, b = await cluster.node("a"), await cluster.node("b")
    b.subscribe("t")
    b.subscribe("marker")
    b.unsubscribe("t")
    b.subscribe("t")  # back within the grace period: the subscription is kept
    await asyncio.sleep(GRACE_S + 0.1)  # the cancelled grace period would be over by now
    assert "t" in b.broker.subscriptions
    await settle(b)
    await a.broker.publish("t", b"1")
    await a.broker.publish("marker", b"m1")
    await eventually(lambda: b"m1" in b.inbox.payloads())
    assert b.inbox.payloads() == [b"1", b"m1"]

    b.unsubscribe("t")
    await eventually(lambda: "t" not in b.broker.subscriptions, timeout=GRACE_S + 2)
    await settle(b)
    await a.broker.publish("t", b"2")
    await a.broker.publish("marker", b"m2")
    await eventually(lambda: b"m2" in b.inbox.payloads())
    assert b.inbox.payloads() == [b"1", b"m1", b"m2"]


async def test_requests(cluster: Cluster):
    a, b, _c = [await cluster.node(n) for n in "abc"]
    assert await a.broker.request(b.id, b"x", 2) == b"b:x"
    assert await a.broker.request(a.id, b"x", 2) == b"a:x"  # this node too
    assert sorted(await a.broker.request_all(b"y", 2)) == [b"a:y", b"b:y", b"c:y"]
    with pytest.raises(LookupError):
        await a.broker.request("no-such-node", b"x", 2)
    started = time.monotonic()
    with pytest.raises(NodeUnreachable):
        await a.broker.request(b.id, b"slow", 0.3)
    assert time.monotonic() - started < 1.5
    with pytest.raises(NodeUnreachable):
        await a.broker.request_all(b"slow", 0.3)


async def test_registry(cluster: Cluster):
    a, b, c = [await cluster.node(n) for n in "abc"]
    a.register("conn-1")
    b.register("conn-2")
    await settle(a, b)
    assert await c.broker.locate("conn-1") == a.id
    assert await c.broker.locate("conn-2") == b.id
    assert await c.broker.locate("conn-x") is None
    b.unregister("conn-1")  # not b's: no effect
    await settle(b)
    assert await c.broker.locate("conn-1") == a.id
    a.unregister("conn-1")
    await settle(a)
    assert await c.broker.locate("conn-1") is None
    # fire-and-forget calls of one node apply in call order
    for i in range(50):
        a.register(f"k{i}")
        a.unregister(f"k{i}")
        a.register(f"k{i}")
        a.unregister(f"k{i}")
    a.register("k-last")
    await settle(a)
    assert [await c.broker.locate(f"k{i}") for i in range(50)] == [None] * 50
    assert await c.broker.locate("k-last") == a.id


async def test_counts_transition_exactly_once_with_concurrent_nodes(cluster: Cluster):
    nodes = [await cluster.node(n) for n in "abcd"]
    a, b = nodes[0], nodes[1]
    for _ in range(3):
        results = await asyncio.gather(*(n.set_count(S, "ch", i + 1) for i, n in enumerate(nodes)))
        assert sorted(results, key=str) == [None, None, None, Transition.OCCUPIED]
        assert await b.broker.count(S, "ch") == 10
        assert await b.set_count(S, "ch", 5) is None
        assert await a.broker.count(S, "ch") == 13
        assert await a.set_count(S, "other", 1) is Transition.OCCUPIED
        assert await a.set_count("pusher:app", "ch", 7) is Transition.OCCUPIED
        assert await b.broker.channels(S) == {"ch": 13, "other": 1}
        assert await b.broker.channels(S, "ot") == {"other": 1}
        assert await b.broker.channels(S, "zz") == {}
        assert await b.broker.channels("pusher:app") == {"ch": 7}
        results = await asyncio.gather(*(n.set_count(S, "ch", 0) for n in nodes))
        assert sorted(results, key=str) == [None, None, None, Transition.VACATED]
        assert await a.broker.count(S, "ch") == 0
        assert await a.broker.channels(S) == {"other": 1}
        assert await a.set_count(S, "other", 0) is Transition.VACATED
        assert await a.set_count("pusher:app", "ch", 0) is Transition.VACATED
        assert await a.set_count(S, "never", 0) is None


async def test_presence_dedups_users_across_nodes(cluster: Cluster):
    nodes = [await cluster.node(n) for n in "abc"]
    a, b, c = nodes
    assert await a.join(S, "p", "u1", b'{"from":"a"}') is ADDED
    assert await b.join(S, "p", "u1", b'{"from":"b"}') is None
    assert await a.join(S, "p", "u1", b'{"from":"a"}') is None  # again: still one holder
    assert await c.broker.presence_members(S, "p") == {"u1": b'{"from":"a"}'}
    assert await a.leave(S, "p", "u1") is None  # b still holds u1; the first document stays
    assert await c.broker.presence_members(S, "p") == {"u1": b'{"from":"a"}'}
    assert await c.leave(S, "p", "u1") is None  # c never held it
    assert await b.leave(S, "p", "u1") is REMOVED
    assert await c.broker.presence_members(S, "p") == {}
    assert await b.leave(S, "p", "u1") is None
    for _ in range(3):
        joins = await asyncio.gather(*(n.join(S, "p", "u2", n.inbox.name.encode()) for n in nodes))
        assert sorted(joins, key=str) == [None, None, ADDED]
        leaves = await asyncio.gather(*(n.leave(S, "p", "u2") for n in nodes))
        assert sorted(leaves, key=str) == [None, None, REMOVED]
    assert await a.broker.presence_members(S, "p") == {}


async def test_dead_node_share_is_removed_once_by_a_survivor(cluster: Cluster):
    a, b, c = [await cluster.node(n) for n in "abc"]
    c.register("conn-c")
    c.subscribe("t")
    assert await c.set_count(S, "solo", 2) is Transition.OCCUPIED
    assert await c.set_count(S, "shared", 1) is Transition.OCCUPIED
    assert await a.set_count(S, "shared", 1) is None
    assert await c.join(S, "p", "u-solo", b"m-solo") is ADDED
    assert await c.join(S, "p", "u-shared", b"m-shared") is ADDED
    assert await a.join(S, "p", "u-shared", b"m-a") is None
    await settle(c)

    crashed = time.monotonic()
    await cluster.crash(c)
    await eventually(lambda: a.inbox.orphaned or b.inbox.orphaned, timeout=NODE_TTL_S + 3)
    assert time.monotonic() - crashed < NODE_TTL_S + 10 * HEARTBEAT_S
    assert await a.broker.locate("conn-c") is None
    assert await b.broker.count(S, "solo") == 0
    assert await b.broker.count(S, "shared") == 1
    assert await b.broker.channels(S) == {"shared": 1}
    assert await b.broker.presence_members(S, "p") == {"u-shared": b"m-shared"}
    with pytest.raises(LookupError):
        await a.broker.request(c.id, b"x", 1)
    assert sorted(await a.broker.request_all(b"x", 1)) == [b"a:x", b"b:x"]
    await a.broker.publish("t", b"nobody")  # no delivery to a dead node, no error

    await asyncio.sleep(5 * HEARTBEAT_S)  # every survivor has swept again meanwhile
    calls = a.inbox.orphaned + b.inbox.orphaned
    assert len(calls) == 1
    assert sorted(calls[0], key=repr) == sorted(
        [
            Change(Transition.VACATED, S, "solo"),
            Change(Transition.MEMBER_REMOVED, S, "p", "u-solo", b"m-solo"),
        ],
        key=repr,
    )
    # the survivors' transitions stay exact afterwards
    assert await a.set_count(S, "solo", 1) is Transition.OCCUPIED
    assert await a.leave(S, "p", "u-shared") is REMOVED


async def test_close_removes_the_share_and_reports_nothing(cluster: Cluster):
    a, b = await cluster.node("a"), await cluster.node("b")
    b.register("conn-b")
    assert await b.set_count(S, "ch", 2) is Transition.OCCUPIED
    assert await b.join(S, "p", "u", b"m") is ADDED
    await settle(b)
    cluster.nodes.remove(b)
    await b.broker.close()
    assert await a.broker.locate("conn-b") is None
    assert await a.broker.count(S, "ch") == 0
    assert await a.broker.channels(S) == {}
    assert await a.broker.presence_members(S, "p") == {}
    with pytest.raises(LookupError):
        await a.broker.request(b.id, b"x", 1)
    assert await a.broker.request_all(b"x", 1) == [b"a:x"]
    await asyncio.sleep(3 * HEARTBEAT_S)  # a sweep would have found it by now
    assert a.inbox.orphaned == []
    assert await a.set_count(S, "ch", 1) is Transition.OCCUPIED  # b's count is really gone


async def test_subscribed_means_the_next_publication_of_another_node_arrives(cluster: Cluster):
    a, b = await cluster.node("a"), await cluster.node("b")
    for i in range(20):
        key = f"fresh.{i}"
        b.broker.subscribe(key)
        await b.broker.subscribed(key, 2.0)  # no settle, no polling: confirmed means delivered
        await a.broker.publish(key, str(i).encode())
    await a.broker.publish("fresh.19", b"end")
    await eventually(lambda: b"end" in b.inbox.payloads())
    assert b.inbox.payloads()[:20] == [str(i).encode() for i in range(20)]
