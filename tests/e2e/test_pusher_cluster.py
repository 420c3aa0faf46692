"""One Pusher app across several nodes (issue 6): three in-process gateways on one
``MemoryBus`` driven by the real ``pusher`` SDK and raw protocol clients. Deliveries are checked
for "exactly once" with a marker event sent after everything else; webhooks are counted after
every node has stopped (stopping flushes the webhook queues)."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import pusher
import pytest
import websockets

from sockway.brokers.memory import MemoryBroker
from sockway.gateway.gateway import Gateway
from tests.e2e.pusher_cluster import OutageBroker, presence, pusher_nodes, signed_in
from tests.e2e.pusher_support import KEY, Client, sdk
from tests.e2e.support import wait_until
from tests.e2e.test_pusher_webhooks import Receiver
from tests.redis_support import redis_url


@pytest.fixture(params=["memory", "redis"])
def on_broker(request: pytest.FixtureRequest) -> str:
    """Run the test on MemoryBrokers and on RedisBrokers (a real Redis, found or started)."""
    if request.param == "redis":
        os.environ["SOCKWAY_TEST_REDIS"] = redis_url()  # restored after the test (conftest)
    return str(request.param)


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def hooks(receiver: Receiver, channel: str) -> Counter[tuple[str, str]]:
    """(name, user_id or count) → how many times the webhooks said it about ``channel``."""
    return Counter(
        (e["name"], str(e.get("user_id", e.get("subscription_count", ""))))
        for e in receiver.events()
        if e.get("channel") == channel
    )


async def test_events_reach_every_node_once_and_socket_id_is_excluded_everywhere(
    on_broker, tmp_path
):
    async with pusher_nodes(tmp_path, 3, enable_client_messages=True) as nodes:
        subs = [await Client.connect(gw) for gw in nodes for _ in (1, 2)]
        for c in subs:
            ok = await c.subscribe("news")
            assert ok["event"] == "pusher_internal:subscription_succeeded"
        for i, gw in enumerate(nodes):
            await sdk(gw).trigger("news", "e", {"n": i})
        for c in subs:
            got = [json.loads((await c.expect("e"))["data"])["n"] for _ in range(3)]
            assert sorted(got) == [0, 1, 2]
        # socket_id excludes a socket of node C from events triggered on A and B.
        excluded = subs[4]
        await sdk(nodes[0]).trigger("news", "x", {}, socket_id=excluded.socket_id)
        await sdk(nodes[1]).trigger_batch(
            [{"channel": "news", "name": "b", "data": {}, "socket_id": excluded.socket_id}]
        )
        await sdk(nodes[2]).trigger("news", "end", {})
        for c in subs:
            names = [(await c.recv())["event"] for _ in range(1 if c is excluded else 3)]
            assert names == (["end"] if c is excluded else ["x", "b", "end"])

        # Client events reach the other nodes' members once, never the sender.
        chat = [await Client.connect(gw) for gw in nodes]
        for c in chat:
            auth = sdk(nodes[0]).authenticate("private-chat", c.socket_id)
            ok = await c.subscribe("private-chat", auth)
            assert ok["event"] == "pusher_internal:subscription_succeeded"
        await chat[1].send("client-hi", {"from": "b"}, channel="private-chat")
        for c in (chat[0], chat[2]):
            got = await c.expect("client-hi")
            assert got == {"event": "client-hi", "channel": "private-chat", "data": {"from": "b"}}
        await sdk(nodes[0]).trigger("private-chat", "end", {})
        for c in chat:
            await c.expect("end")


async def test_presence_and_channel_info_agree_on_every_node(on_broker, tmp_path, receiver):
    async with pusher_nodes(tmp_path, 3, webhook_url=receiver.url) as (a, b, c):
        one, _ = await presence(a, "1", {"name": "A"})
        two_b, ok = await presence(b, 2)  # a numeric id stays a number
        assert json.loads(ok["data"])["presence"] == {
            "ids": ["1", 2],
            "hash": {"1": {"name": "A"}, "2": None},
            "count": 2,
        }
        added = await one.expect("pusher_internal:member_added")
        assert json.loads(added["data"]) == {"user_id": 2}
        two_c, ok = await presence(c, 2)  # the same user's second socket, on another node
        assert json.loads(ok["data"])["presence"]["count"] == 2
        plain = await Client.connect(c)
        await plain.subscribe("news")
        for gw in (a, b, c):
            p = sdk(gw)
            assert await p.users_info("presence-room") == {"users": [{"id": "1"}, {"id": "2"}]}
            info = await p.channel_info("presence-room", ["user_count", "subscription_count"])
            assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}
            listing = await p.channels_info(prefix_filter="presence-", attributes=["user_count"])
            assert listing == {"channels": {"presence-room": {"user_count": 2}}}
            everything = await p.channels_info(attributes=["subscription_count"])
            assert everything == {
                "channels": {
                    "news": {"subscription_count": 1},
                    "presence-room": {"subscription_count": 3},
                }
            }
            assert await p.channel_info("nobody") == {"occupied": False}
        # The trigger's info attributes are cluster-wide too.
        batch = [{"channel": "presence-room", "name": "e", "data": {}, "info": "user_count"}]
        answer = await sdk(b).trigger_batch(batch)
        assert answer == {"batch": [{"user_count": 2}]}
        await one.expect("e")

        # User 2 leaves node B but is still on C: nobody hears of it. Then C: member_removed.
        await two_b.close()
        await two_c.close()
        removed = await one.expect("pusher_internal:member_removed")  # no other frame before
        assert json.loads(removed["data"]) == {"user_id": 2}
        await wait_until(lambda: hooks(receiver, "presence-room")[("member_removed", "2")] == 1)
        for gw in (a, b, c):
            assert await sdk(gw).users_info("presence-room") == {"users": [{"id": "1"}]}
        await one.close()
        await plain.close()
        # Before stopping: a node that stops does not wait for its counts to be reported.
        await wait_until(lambda: hooks(receiver, "presence-room")[("channel_vacated", "")] == 1)
        for gw in (a, b, c):
            await gw.stop(grace_s=5)
    assert hooks(receiver, "presence-room") == {
        ("channel_occupied", ""): 1,
        ("member_added", "1"): 1,
        ("member_added", "2"): 1,
        ("member_removed", "2"): 1,
        ("member_removed", "1"): 1,
        ("channel_vacated", ""): 1,
    }


async def test_occupancy_and_subscription_count_webhooks_fire_once(on_broker, tmp_path, receiver):
    async with pusher_nodes(tmp_path, 2, webhook_url=receiver.url) as (a, b):
        on_a, on_b = await Client.connect(a), await Client.connect(b)
        await on_a.subscribe("room")
        await wait_until(lambda: hooks(receiver, "room")[("subscription_count", "1")] == 1)
        await on_b.subscribe("room")
        await wait_until(lambda: hooks(receiver, "room")[("subscription_count", "2")] == 1)
        await on_a.close()
        await wait_until(lambda: hooks(receiver, "room")[("subscription_count", "1")] == 2)
        await on_b.close()
        await wait_until(lambda: hooks(receiver, "room")[("channel_vacated", "")] == 1)
        for gw in (a, b):
            await gw.stop(grace_s=5)
    assert hooks(receiver, "room") == {
        ("channel_occupied", ""): 1,
        ("channel_vacated", ""): 1,
        ("subscription_count", "1"): 2,
        ("subscription_count", "2"): 1,
        ("subscription_count", "0"): 1,
    }


async def test_one_channels_webhooks_keep_their_order(on_broker, tmp_path, receiver):
    """occupied, member_added … member_removed, vacated: the order one node gives, also when
    the occupancy transitions come back from Redis."""
    async with pusher_nodes(tmp_path, 2, webhook_url=receiver.url) as (a, b):
        for _ in range(3):
            client, _ = await presence(a, "ann", channel="presence-order")
            await client.close()
            client, _ = await presence(b, "bob", channel="presence-order")
            await client.close()
        await wait_until(lambda: hooks(receiver, "presence-order")[("channel_vacated", "")] == 6)
    names = [
        e["name"]
        for e in receiver.events()
        if e.get("channel") == "presence-order" and e["name"] != "subscription_count"
    ]
    assert names == ["channel_occupied", "member_added", "member_removed", "channel_vacated"] * 6


async def test_presence_member_limit_counts_every_node(tmp_path):
    async with pusher_nodes(tmp_path, 2, max_presence_members_per_channel=1) as (a, b):
        await presence(a, "1")
        _, refused = await presence(b, "2")
        assert refused["event"] == "pusher:subscription_error", refused
        assert refused["data"]["status"] == 4100
        _, again = await presence(b, "1")  # a further socket of a present member is fine
        assert again["event"] == "pusher_internal:subscription_succeeded"


async def test_a_socket_that_resubscribes_as_another_user_moves_the_member(
    on_broker, tmp_path, receiver
):
    async with pusher_nodes(tmp_path, 2, webhook_url=receiver.url) as (a, b):
        watcher, _ = await presence(a, "w")
        mover, _ = await presence(b, "u1")
        await watcher.expect("pusher_internal:member_added")
        auth = sdk(b).authenticate("presence-room", mover.socket_id, {"user_id": "u2"})
        ok = await mover.subscribe("presence-room", auth)
        assert sorted(json.loads(ok["data"])["presence"]["ids"]) == ["u2", "w"]
        removed = await watcher.expect("pusher_internal:member_removed")
        added = await watcher.expect("pusher_internal:member_added")
        assert json.loads(removed["data"]) == {"user_id": "u1"}
        assert json.loads(added["data"]) == {"user_id": "u2"}
        info = await sdk(a).channel_info("presence-room", ["user_count", "subscription_count"])
        assert info == {"occupied": True, "user_count": 2, "subscription_count": 2}
        await wait_until(lambda: hooks(receiver, "presence-room")[("member_added", "u2")] == 1)
        assert hooks(receiver, "presence-room")[("channel_occupied", "")] == 1
        assert hooks(receiver, "presence-room")[("channel_vacated", "")] == 0


async def test_server_to_user_and_terminate_reach_every_node(on_broker, tmp_path):
    async with pusher_nodes(tmp_path, 3) as (a, b, c):
        on_b, on_c, other = (
            await signed_in(b, "42"),
            await signed_in(c, "42"),
            await signed_in(c, "7"),
        )
        p = sdk(a)
        await p.send_to_user("42", "hello", {"x": 1})
        for client in (on_b, on_c):
            got = await client.expect("hello")
            assert got["channel"] == "#server-to-user-42" and json.loads(got["data"]) == {"x": 1}
        assert await p.terminate_user_connections("42") == {}
        for client in (on_b, on_c):
            err = await client.expect("pusher:error")
            assert err["data"] == {"code": 4009, "message": "You got disconnected by the app."}
            with pytest.raises(websockets.ConnectionClosed):
                await client.recv()
        await other.send("pusher:ping")
        await other.expect("pusher:pong")  # only user 42 was terminated


def cache_of(gateway: Gateway) -> dict[str, Any]:
    return gateway.cluster.members["p"].app.cache  # type: ignore[attr-defined,no-any-return]


async def test_cache_channels_are_filled_on_every_node(on_broker, tmp_path):
    async with pusher_nodes(tmp_path, 3) as (a, _, c):
        await sdk(a).trigger("cache-x", "last", {"v": 1})  # nobody subscribed anywhere
        await wait_until(lambda: "cache-x" in cache_of(c))
        late = await Client.connect(c)
        ok = await late.subscribe("cache-x")
        assert ok["event"] == "pusher_internal:subscription_succeeded"
        cached = await late.expect("last")
        assert json.loads(cached["data"]) == {"v": 1}
        await late.subscribe("cache-y")
        await late.expect("pusher:cache_miss")


class ConfirmWhenTold(MemoryBroker):
    """Confirms the subscription of ``cache-x`` only once the test sets ``go`` (a slow Redis
    SUBSCRIBE round trip, made certain)."""

    waiting = False
    go: asyncio.Event

    async def subscribed(self, key: str, timeout: float) -> None:
        if key.endswith("|cache-x"):
            type(self).waiting = True
            await type(self).go.wait()
        await super().subscribed(key, timeout)


async def test_a_publication_during_the_subscribe_arrives_once_after_subscription_succeeded(
    tmp_path,
):
    """CI once saw ``last``, ``subscription_succeeded``, ``last``: the socket was a member while
    its node waited for the broker, so the cache event arrived live and then from the cache."""
    ConfirmWhenTold.go = asyncio.Event()
    async with pusher_nodes(tmp_path, 2, broker=ConfirmWhenTold) as (a, c):
        late = await Client.connect(c)
        await late.send("pusher:subscribe", {"channel": "cache-x"})
        await wait_until(lambda: ConfirmWhenTold.waiting)
        await sdk(a).trigger("cache-x", "last", {"v": 1})
        await wait_until(lambda: "cache-x" in cache_of(c))
        ConfirmWhenTold.go.set()
        await late.expect("pusher_internal:subscription_succeeded")
        cached = await late.expect("last")
        assert json.loads(cached["data"]) == {"v": 1}
        await late.send("pusher:ping")
        await late.expect("pusher:pong")  # and not the event a second time
        await sdk(a).trigger("cache-x", "next", {"v": 2})
        assert json.loads((await late.expect("next"))["data"]) == {"v": 2}


async def test_a_dead_node_leaves_no_ghosts_and_its_webhooks_fire_once(tmp_path, receiver):
    nodes = pusher_nodes(tmp_path, 3, webhook_url=receiver.url, broker=MemoryBroker)
    async with nodes as (a, b, c):
        watcher, _ = await presence(a, "1")
        peer, _ = await presence(b, "2")
        await presence(c, "3")
        await watcher.expect("pusher_internal:member_added")
        await watcher.expect("pusher_internal:member_added")
        await peer.expect("pusher_internal:member_added")
        solo, shared_b, shared_c = [await Client.connect(gw) for gw in (c, b, c)]
        await solo.subscribe("solo")
        await shared_b.subscribe("shared")
        await shared_c.subscribe("shared")
        await wait_until(lambda: hooks(receiver, "solo")[("channel_occupied", "")] == 1)

        c.cluster.broker.crash()  # type: ignore[attr-defined]

        for client in (watcher, peer):
            removed = await client.expect("pusher_internal:member_removed")
            assert json.loads(removed["data"]) == {"user_id": "3"}
        await wait_until(lambda: hooks(receiver, "solo")[("channel_vacated", "")] == 1)
        for gw in (a, b):
            p = sdk(gw)
            assert await p.channel_info("solo") == {"occupied": False}
            info = await p.channel_info("shared", ["subscription_count"])
            assert info == {"occupied": True, "subscription_count": 1}
            users = await p.users_info("presence-room")
            assert users == {"users": [{"id": "1"}, {"id": "2"}]}
        for gw in (c, a, b):  # the dead node's clients go; then the survivors stop
            await gw.stop(grace_s=5)
    assert hooks(receiver, "solo") == {
        ("channel_occupied", ""): 1,
        ("subscription_count", "1"): 1,
        ("channel_vacated", ""): 1,
        ("subscription_count", "0"): 1,  # node C's own, as its (dead) socket goes
    }
    room = hooks(receiver, "presence-room")
    assert room[("member_removed", "3")] == 1 and room[("channel_vacated", "")] == 1
    assert hooks(receiver, "shared")[("channel_vacated", "")] == 1


def _failures(gw: Any) -> float:
    for line in gw.metrics.render().decode().splitlines():
        if line.startswith('sockway_cluster_publish_failures_total{api="p"}'):
            return float(line.split()[-1])
    return 0.0


async def _status(p: Any, call: str, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(pusher.errors.PusherBadStatus) as err:
        await getattr(p, call)(*args, **kwargs)
    return str(err.value)


async def test_broker_outage_answers_503_and_keeps_local_traffic(tmp_path):
    async with pusher_nodes(tmp_path, 2, broker=OutageBroker, enable_client_messages=True) as (
        a,
        b,
    ):
        here, there = await Client.connect(a), await Client.connect(b)
        far, _ = await presence(b, "far")
        for client in (here, there):
            await client.subscribe(
                "private-chat", sdk(a).authenticate("private-chat", client.socket_id)
            )
        local = await Client.connect(a)
        await local.subscribe("private-chat", sdk(a).authenticate("private-chat", local.socket_id))
        broker = a.cluster.broker
        assert isinstance(broker, OutageBroker)
        broker.down = True

        p = sdk(a)
        for call, args in (
            ("trigger", ("private-chat", "e", {})),
            ("channel_info", ("private-chat",)),
            ("channels_info", ()),
            ("users_info", ("presence-room",)),
            ("terminate_user_connections", ("far",)),
        ):
            message = await _status(p, call, *args)
            assert message.startswith("503: "), message
            body = json.loads(message[5:])
            assert body["retryable"] is True and "retry" in body["error"], body
        # WebSocket traffic still reaches this node's subscribers; the loss is counted.
        before = _failures(a)
        await here.send("client-hi", {}, channel="private-chat")
        await local.expect("client-hi")
        await wait_until(lambda: _failures(a) == before + 1)
        # A presence subscribe falls back to this node's members, without a crash.
        _, ok = await presence(a, "near")
        assert json.loads(ok["data"])["presence"]["ids"] == ["near"]

        broker.down = False
        await sdk(a).trigger("private-chat", "back", {})
        for client in (here, there, local):
            await client.expect("back")  # node B never saw the lost client event
        assert (await sdk(b).users_info("presence-room"))["users"][0] == {"id": "far"}
        await far.close()


async def test_max_connections_counts_the_sockets_of_every_node(on_broker, tmp_path):
    """soketi's quota is the app's: with max_connections 2, one socket on A and one on B fill
    it, a third is refused with 4004 on either node, and a freed place is taken again."""
    async with pusher_nodes(tmp_path, 2, max_connections=2) as (a, b):
        first = await Client.connect(a)
        second = await Client.connect(b)
        for gw in (a, b):
            await gw.cluster.flush()  # each node's count is written
        for gw in (a, b):
            async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app/{KEY}?protocol=7") as ws:
                refused = json.loads(await ws.recv())
                assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4004
                with pytest.raises(websockets.ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 4004
        await second.close()
        await wait_until(lambda: not b.cluster.members["p"].app.sockets)  # type: ignore[attr-defined]
        await b.cluster.flush()
        third = await Client.connect(a)  # the place B freed
        await third.send("pusher:ping")
        await third.expect("pusher:pong")
        await first.close()
        await third.close()
