"""What only the Redis broker has (issue 6): key-prefix isolation, sweeps handed over, and the
failure contract of ``brokers/base`` on a private ``redis-server`` that the tests stop, pause
and restart (ephemeral port, no persistence).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from sockway.brokers import redis_link
from sockway.brokers.base import BrokerUnavailable, Change, Transition
from sockway.brokers.redis_share import Keys
from tests.brokers.harness import Cluster, Node, eventually
from tests.redis_support import RedisClusterServers, RedisServer, free_port, redis_ping

S = "appsync:events"


@pytest.fixture
async def private(redis_server: RedisServer, prefix: str) -> AsyncIterator[Cluster]:
    c = Cluster("redis", redis_server.url, prefix)
    yield c
    await c.close()


async def test_key_prefix_isolates_gateways_on_one_redis(redis_url: str, prefix: str):
    one, two = (
        Cluster("redis", redis_url, prefix + "-1"),
        Cluster("redis", redis_url, prefix + "-2"),
    )
    try:
        a1, b1 = await one.node("a1"), await one.node("b1")
        a2, b2 = await two.node("a2"), await two.node("b2")
        for node in (b1, b2):
            node.subscribe("t")
            node.subscribe("t*")
            await node.settle()
        a1.register("conn")
        assert await a1.set_count(S, "ch", 1) is Transition.OCCUPIED
        assert await a2.set_count(S, "ch", 2) is Transition.OCCUPIED  # not seen by gateway one
        assert await a1.join(S, "p", "u", b"1") is Transition.MEMBER_ADDED
        assert await a2.join(S, "p", "u", b"2") is Transition.MEMBER_ADDED
        await a1.broker.publish("t", b"one")
        await a2.broker.publish("t", b"two")
        await eventually(
            lambda: len(b1.inbox.publications) == 2 and len(b2.inbox.publications) == 2
        )
        assert b1.inbox.payloads() == [b"one", b"one"]
        assert b2.inbox.payloads() == [b"two", b"two"]
        assert await b2.broker.locate("conn") is None
        assert await b1.broker.locate("conn") == a1.id
        assert await b2.broker.channels(S) == {"ch": 2}
        assert await b1.broker.presence_members(S, "p") == {"u": b"1"}
        assert sorted(await a2.broker.request_all(b"?", 2)) == [b"a2:?", b"b2:?"]
        with pytest.raises(LookupError):
            await a2.broker.request(a1.id, b"?", 2)
    finally:
        await one.close()
        await two.close()


async def test_a_sweep_cut_short_is_finished_by_another_node(private: Cluster, prefix: str):
    """A sweeper dies after removing one entry: its transition is not lost nor repeated."""
    dead = await private.node("dead")
    assert await dead.set_count(S, "one", 1) is Transition.OCCUPIED
    assert await dead.set_count(S, "two", 1) is Transition.OCCUPIED
    await private.crash(dead)
    keys = Keys(prefix)
    raw = Redis.from_url(private.redis_url)
    try:
        deadline = time.monotonic() + 5
        while await raw.exists(keys.hb(dead.id)):  # until the heartbeat expired
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        # The interrupted sweeper: took the lock, removed one entry, died.
        await raw.set(keys.lock(dead.id), "ghost", px=600)
        cmd, _ = keys.set_count(dead.id, S, "one", 0, dead=True)
        assert await raw.execute_command(*cmd) == 2  # vacated, recorded in the orphan list
    finally:
        await raw.aclose()
    survivor = await private.node("survivor")
    await eventually(lambda: bool(survivor.inbox.orphaned), timeout=5)
    assert sorted(survivor.inbox.orphaned[0], key=repr) == [
        Change(Transition.VACATED, S, "one"),
        Change(Transition.VACATED, S, "two"),
    ]
    assert await survivor.broker.channels(S) == {}


async def _fails_fast(op: Callable[[], Awaitable[Any]]) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await op()
    assert time.monotonic() - started < 1.6


async def _share(a: Node) -> None:
    a.subscribe("t")
    a.register("conn-1")
    assert await a.set_count(S, "ch", 1) is Transition.OCCUPIED
    assert await a.join(S, "p", "u1", b"m1") is Transition.MEMBER_ADDED
    await a.settle()


async def test_redis_down_fails_fast_then_everything_is_rewritten(
    private: Cluster, redis_server: RedisServer
):
    a, b = await private.node("a"), await private.node("b")
    await _share(a)
    b.subscribe("from-a")
    await b.settle()

    redis_server.stop()
    await _fails_fast(lambda: a.set_count(S, "ch", 2))  # local count 2 now
    await eventually(lambda: not a.broker.available and not b.broker.available, timeout=2)
    await _fails_fast(lambda: a.broker.publish("t", b"x"))
    await _fails_fast(lambda: a.broker.locate("conn-1"))
    await _fails_fast(lambda: a.broker.count(S, "ch"))
    await _fails_fast(lambda: a.broker.channels(S))
    await _fails_fast(lambda: a.join(S, "p", "u2", b"m2"))  # local: u2 present
    await _fails_fast(lambda: a.broker.presence_members(S, "p"))
    await _fails_fast(lambda: a.broker.request(b.id, b"x", 1))
    await _fails_fast(lambda: a.broker.request_all(b"x", 1))
    a.register("conn-2")  # fire and forget: never raise, covered by the resync
    a.unregister("conn-1")
    a.subscribe("t2")
    a.unsubscribe("t")

    redis_server.start()  # same port, empty: Redis lost everything
    await eventually(lambda: a.broker.available and b.broker.available, timeout=5)
    await a.settle()
    await b.settle()
    assert await b.broker.locate("conn-2") == a.id
    assert await b.broker.locate("conn-1") is None
    assert await b.broker.count(S, "ch") == 2
    assert await b.broker.channels(S) == {"ch": 2}
    assert await b.broker.presence_members(S, "p") == {"u1": b"m1", "u2": b"m2"}
    assert a.inbox.orphaned == []  # fresh Redis: no spurious occupied/added
    await b.broker.publish("t2", b"again")
    await a.broker.publish("from-a", b"hello")
    await eventually(lambda: b"again" in a.inbox.payloads() and b"hello" in b.inbox.payloads())
    assert await b.broker.request(a.id, b"x", 2) == b"a:x"
    assert sorted(await b.broker.request_all(b"x", 2)) == [b"a:x", b"b:x"]


async def test_hung_redis_times_out_then_recovers(private: Cluster, redis_server: RedisServer):
    private.redis_opts["node_ttl_s"] = 5.0  # the pause must not expire heartbeats
    a = await private.node("a")
    await _share(a)
    redis_server.pause()  # accepts connections, never answers
    try:
        await _fails_fast(lambda: a.broker.count(S, "ch"))
        await eventually(lambda: not a.broker.available, timeout=2)
    finally:
        redis_server.resume()
    await eventually(lambda: a.broker.available, timeout=5)
    await a.settle()
    assert await a.broker.count(S, "ch") == 1
    assert a.inbox.orphaned == []


async def test_resync_removes_stale_entries_and_reports_transitions(
    private: Cluster, redis_server: RedisServer
):
    """Connections lost, Redis kept its data: the node's stale entries are removed and the
    transitions of the rewrite go to on_orphaned (the node could not report them itself)."""
    a, b = await private.node("a"), await private.node("b")
    await _share(a)
    assert await a.set_count(S, "solo", 3) is Transition.OCCUPIED
    # Meanwhile (as during an outage) the node's share changed without the broker hearing it.
    del a.state.counts[(S, "solo")]
    a.state.counts[(S, "new")] = 4
    a.state.presence[(S, "p", "u2")] = b"m2"
    del a.state.presence[(S, "p", "u1")]
    admin = Redis.from_url(redis_server.url)
    try:
        for kind in ("normal", "pubsub"):
            await admin.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
    finally:
        await admin.aclose()
    await eventually(lambda: bool(a.inbox.orphaned), timeout=5)
    assert sorted(a.inbox.orphaned[0], key=repr) == sorted(
        [
            Change(Transition.VACATED, S, "solo"),
            Change(Transition.OCCUPIED, S, "new"),
            Change(Transition.MEMBER_ADDED, S, "p", "u2", b"m2"),
            Change(Transition.MEMBER_REMOVED, S, "p", "u1", b"m1"),
        ],
        key=repr,
    )
    await eventually(lambda: b.broker.available, timeout=5)
    assert await b.broker.channels(S) == {"ch": 1, "new": 4}
    assert await b.broker.presence_members(S, "p") == {"u2": b"m2"}
    assert b.inbox.orphaned == []


async def test_reads_ignore_a_dead_node_before_it_is_swept(private: Cluster):
    dead, other = await private.node("dead"), await private.node("other")
    dead.register("conn-d")
    assert await dead.set_count(S, "ch", 2) is Transition.OCCUPIED
    assert await other.set_count(S, "ch", 1) is None
    assert await dead.join(S, "p", "u", b"m") is Transition.MEMBER_ADDED
    await dead.settle()
    await private.crash(dead)
    await private.crash(other)  # nobody sweeps: only the expired heartbeat tells
    private.redis_opts.update(heartbeat_s=3.0, node_ttl_s=10.0)  # no sweep in this test
    reader = await private.node("reader")
    deadline = time.monotonic() + 5
    while await reader.broker.count(S, "ch"):  # until both heartbeats expired
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await reader.broker.locate("conn-d") is None
    assert await reader.broker.channels(S) == {}
    assert await reader.broker.presence_members(S, "p") == {}
    with pytest.raises(LookupError):
        await reader.broker.request(dead.id, b"x", 1)
    assert reader.inbox.orphaned == []


@pytest.fixture
def sentinel_url(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    """A redis-server in sentinel mode monitoring the private Redis as ``main``."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor main 127.0.0.1 {redis_server.port} 1\n"
    )
    args = [redis_server.binary, str(conf), "--sentinel"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not redis_ping(port):
            assert proc.poll() is None and time.monotonic() < deadline, "sentinel did not start"
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port},127.0.0.1:{free_port()}/0"  # 2nd sentinel: down
    finally:
        proc.terminate()
        proc.wait(10)


async def test_sentinel_finds_the_master(sentinel_url: str, redis_server: RedisServer, prefix: str):
    c = Cluster("redis", sentinel_url, prefix, sentinel_master="main")
    try:
        a, b = await c.node("a"), await c.node("b")
        assert a.broker.available and b.broker.available
        b.subscribe("t")
        await b.settle()
        await a.broker.publish("t", b"via sentinel")
        await eventually(lambda: b.inbox.payloads() == [b"via sentinel"])
        assert await a.set_count(S, "ch", 1) is Transition.OCCUPIED
        assert await b.broker.channels(S) == {"ch": 1}
        assert await a.broker.request(b.id, b"x", 2) == b"b:x"
        direct = Redis.from_url(redis_server.url)
        try:  # the data really is on the monitored master
            assert await direct.exists(Keys(prefix).hb(a.id)) == 1
        finally:
            await direct.aclose()
    finally:
        await c.close()


async def test_redis_cluster_failover_moves_the_nodes_to_the_promoted_replica(
    tmp_path: Path, prefix: str
):
    """3 primaries with a replica each. The primary that holds the gateway's slot is stopped —
    and it is the very node ``a``'s URL names: ``a`` comes back through the cluster nodes it
    learned, both nodes follow the slot to the promoted replica, and publications, the
    registry and counts work again across them."""
    servers = RedisClusterServers(tmp_path / "rc", primaries=3, replicas=1).start()
    try:
        owner = servers.primary_of(Keys(prefix).epoch)
        other = next(i for i in range(len(servers.servers)) if i != owner)
        c = Cluster("redis", [servers.url(owner), servers.url(other)], prefix)
        try:
            a, b = await c.node("a"), await c.node("b")
            await publishes_across_a_failover(a, b, servers.servers[owner].stop)
            assert servers.primary_of(Keys(prefix).epoch) != owner
            b.register("apigw|conn-1")
            await settle_all(a, b)
            assert await a.broker.locate("apigw|conn-1") == b.id
            assert await a.set_count("s", "ch", 2) is Transition.OCCUPIED
            assert await b.broker.count("s", "ch") == 2
        finally:
            await c.close()
    finally:
        servers.stop()


async def settle_all(*nodes: Any) -> None:
    for node in nodes:
        await node.settle()


async def publishes_across_a_failover(a: Node, b: Node, fail: Callable[[], None]) -> None:
    """``b`` gets ``a``'s publications before ``fail()`` and again once both brokers have
    followed the failover (a retries while its broker says it is unavailable)."""
    b.subscribe("t")
    await settle_all(a, b)
    await a.broker.publish("t", b"before")
    await eventually(lambda: b"before" in b.inbox.payloads())
    fail()
    await eventually(lambda: not a.broker.available, timeout=10)
    deadline = time.monotonic() + 30
    while b"after" not in b.inbox.payloads():
        assert time.monotonic() < deadline, "no recovery after the failover"
        with contextlib.suppress(BrokerUnavailable):
            await a.broker.publish("t", b"after")
        await asyncio.sleep(0.2)


async def test_sentinel_failover_moves_the_nodes_to_the_new_master(tmp_path: Path, prefix: str):
    """A master, its replica and a Sentinel (quorum 1, down after 500 ms). The master is
    stopped: Sentinel promotes the replica and both gateway nodes, asking Sentinel again on
    reconnect, carry on with it — publications and counts work across them."""
    master = RedisServer(tmp_path / "master").start()
    replica = RedisServer(tmp_path / "replica")
    replica.extra = ["--replicaof", "127.0.0.1", str(master.port)]
    replica.start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor main 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds main 500\nsentinel failover-timeout main 3000\n"
    )
    sentinel = subprocess.Popen(
        [master.binary, str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not redis_ping(port):
            assert sentinel.poll() is None and time.monotonic() < deadline, "no sentinel"
            time.sleep(0.02)
        c = Cluster("redis", f"redis://127.0.0.1:{port}/0", prefix, sentinel_master="main")
        try:
            a, b = await c.node("a"), await c.node("b")
            await publishes_across_a_failover(a, b, master.stop)
            direct = Redis(port=replica.port, socket_timeout=1)
            try:
                role = await direct.execute_command("ROLE")
            finally:
                await direct.aclose()
            assert role[0] in (b"master", "master")  # the replica was promoted
            assert await a.set_count(S, "ch", 1) is Transition.OCCUPIED
            assert await b.broker.count(S, "ch") == 1
        finally:
            await c.close()
    finally:
        sentinel.terminate()
        sentinel.wait(10)
        replica.stop()
        master.stop()


async def test_a_slow_redis_bounds_the_queue_and_loses_no_state(
    private: Cluster, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
):
    """Redis answers, but slowly (paused for less than the socket timeout, so the session
    lives on): past ``MAX_QUEUED`` waiting commands an awaited call is refused at once with a
    retryable error and fire-and-forget writes are dropped — and once the queue has drained,
    the node's share is rewritten from its snapshot, so every registration is there."""
    monkeypatch.setattr(redis_link, "MAX_QUEUED", 50)
    a, b = await private.node("a"), await private.node("b")
    redis_server.pause()
    try:
        for i in range(500):
            a.register(f"apigw|c{i}")  # 50 queued, the rest dropped
        await asyncio.sleep(0.05)  # the writer sends those 50 and waits for the paused Redis
        for i in range(500, 1000):
            a.register(f"apigw|c{i}")
        assert len(a.broker._queue) == 50
        with pytest.raises(BrokerUnavailable, match="overloaded"):
            await asyncio.wait_for(a.broker.publish("t", b"x"), 0.2)  # refused, not queued
    finally:
        await asyncio.sleep(0.3)
        redis_server.resume()
    assert a.broker.available  # no reconnect happened: the shedding alone recovered it
    await eventually(lambda: not a.broker._shedding)
    await a.settle()
    owners = [await b.broker.locate(f"apigw|c{i}") for i in range(1000)]
    assert owners == [a.id] * 1000
