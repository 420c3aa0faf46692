"""AppSync Events across nodes (issue 6): real gateways on one memory bus, real WebSocket and
HTTP clients (the delivery tests run on memory brokers and on RedisBrokers). "Exactly once" is checked without sleeping: after the expected frames, a sentinel
published the same way to the same channel must be the very next frame (publications of one
node to one channel arrive in order, so a duplicate would come before it)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sockway.brokers.base import Broker
from sockway.brokers.redis import RedisBroker
from tests.conftest import write_handlers
from tests.e2e.appsync_cluster import GRACE_S, events_cluster
from tests.e2e.appsync_support import API_KEY, EventsClient, events_api
from tests.e2e.support import wait_until
from tests.redis_support import redis_url

ROOT = Path(__file__).resolve().parents[2]
AMPLIFY = Path(__file__).parent / "js" / "amplify_cluster.mjs"
IN = "sockway_cluster_publications_total"
FAILED = "sockway_cluster_publish_failures_total"


async def frames(client: EventsClient, n: int) -> list[tuple[str, Any]]:
    """The next ``n`` data frames as (subscription id, decoded event)."""
    out = []
    for _ in range(n):
        frame = await client.recv()
        assert frame["type"] == "data", frame
        out.append((frame["id"], json.loads(frame["event"])))
    return out


Factory = Callable[[], Broker] | None


@pytest.fixture(params=["memory", "redis"])
def on_broker(request: pytest.FixtureRequest) -> Factory:
    """Memory brokers on one bus (the default), or RedisBrokers on a real Redis."""
    if request.param == "memory":
        return None
    url, prefix = redis_url(), f"test-events-{uuid.uuid4().hex[:12]}"
    return lambda: RedisBroker(url, key_prefix=prefix, unsubscribe_grace_s=GRACE_S)


async def subscribed(client: EventsClient, sub_id: str, channel: str) -> None:
    assert (await client.subscribe(sub_id, channel))["type"] == "subscribe_success"


async def test_http_publish_reaches_every_node_exactly_once(
    tmp_path: Path, on_broker: Factory
) -> None:
    async with events_cluster(tmp_path, broker=on_broker, n=3) as c:
        subs = [await c.connect(i) for i in range(3)]
        for sub in subs:
            await subscribed(sub, "s", "/default/room")
        assert all("ev|/default/room" in c.keys(i) for i in range(3))
        status, body, _ = await c.http_publish(0, "/default/room", [{"n": 1}, {"n": 2}])
        assert status == 200 and [s["index"] for s in body["successful"]] == [0, 1]
        for sub in subs:
            assert await frames(sub, 2) == [("s", {"n": 1}), ("s", {"n": 2})]
        assert (await c.http_publish(0, "/default/room", ["end"]))[0] == 200
        for sub in subs:
            assert await frames(sub, 1) == [("s", "end")]
        assert c.metric(0, IN, direction="out") == 2
        assert c.metric(1, IN, direction="in") == 2 and c.metric(2, IN, direction="in") == 2
        assert c.metric(0, IN, direction="in") == 0


async def test_exact_and_wildcards_on_one_node_each_deliver_once(
    tmp_path: Path, on_broker: Factory
) -> None:
    async with events_cluster(tmp_path, broker=on_broker, n=2) as c:
        sub = await c.connect(1)
        for sub_id, channel in [
            ("exact", "/default/a/b"),
            ("ns", "/default/*"),
            ("mid", "/default/a/*"),
            ("deeper", "/default/a/b/*"),  # does not match /default/a/b
            ("other", "/other/*"),
        ]:
            await subscribed(sub, sub_id, channel)
        second = await c.connect(1)  # a second subscriber of a key already held
        await subscribed(second, "mid2", "/default/a/*")
        assert c.keys(1) == {
            "ev|/default/a/b",
            "ev|/default/*",
            "ev|/default/a/*",
            "ev|/default/a/b/*",
            "ev|/other/*",
        }
        pub = await c.connect(0)
        assert (await pub.publish("p1", "/default/a/b", [1]))["type"] == "publish_success"
        assert sorted(await frames(sub, 3)) == [("exact", 1), ("mid", 1), ("ns", 1)]
        assert await frames(second, 1) == [("mid2", 1)]
        # A wildcard does not match its bare prefix: /default/a/* misses /default/a.
        assert (await pub.publish("p2", "/default/a", [2]))["type"] == "publish_success"
        assert await frames(sub, 1) == [("ns", 2)]
        assert (await pub.publish("p3", "/default/a/b", ["end"]))["type"] == "publish_success"
        assert sorted(await frames(sub, 3)) == [("exact", "end"), ("mid", "end"), ("ns", "end")]
        assert await frames(second, 1) == [("mid2", "end")]


async def test_websocket_publish_on_b_reaches_a_in_order(
    tmp_path: Path, on_broker: Factory
) -> None:
    async with events_cluster(
        tmp_path, broker=on_broker, n=3
    ) as c:  # node 2: no subscribers, receives nothing
        sub = await c.connect(0)
        await subscribed(sub, "s", "/default/chat")
        pub = await c.connect(1)
        await subscribed(pub, "own", "/default/chat")  # the publisher's node delivers locally
        for n in range(20):
            await pub.send(
                {
                    "type": "publish",
                    "id": f"p{n}",
                    "channel": "/default/chat",
                    "events": [json.dumps(n)],
                    "authorization": {"x-api-key": "da2-abcdefghijklmnopqrstuvwxyz"},
                }
            )
        assert await frames(sub, 20) == [("s", n) for n in range(20)]
        replies = [await pub.recv() for _ in range(40)]
        assert sorted(r["id"] for r in replies if r["type"] == "publish_success") == sorted(
            f"p{n}" for n in range(20)
        )
        assert [json.loads(r["event"]) for r in replies if r["type"] == "data"] == list(range(20))
        assert c.keys(2) == set() and c.metric(2, IN, direction="in") == 0
        assert c.metric(0, IN, direction="in") == 20 and c.metric(1, IN, direction="out") == 20


async def test_no_event_precedes_subscribe_success_while_the_broker_confirms(
    tmp_path: Path,
) -> None:
    """A publication that reaches the node while it waits for the broker's confirmation is
    not sent to the subscription being made: ``subscribe_success`` is its first frame."""
    async with events_cluster(tmp_path, n=2) as c:
        slow = c.outage(1)
        slow.hold_back, slow.go = "ev|/default/room", asyncio.Event()
        sub = await c.connect(1)
        await sub.send(
            {
                "type": "subscribe",
                "id": "s",
                "channel": "/default/room",
                "authorization": {"x-api-key": API_KEY},
            }
        )
        await wait_until(lambda: slow.waiting)
        assert (await c.http_publish(0, "/default/room", ["early"]))[0] == 200
        await wait_until(lambda: c.metric(1, IN, direction="in") == 1)  # it reached node 1
        slow.go.set()
        ok = await sub.recv()
        assert ok == {"type": "subscribe_success", "id": "s"}
        assert (await c.http_publish(0, "/default/room", ["late"]))[0] == 200
        assert await frames(sub, 1) == [("s", "late")]


async def test_last_unsubscribe_stops_delivery_and_drops_the_broker_key(tmp_path: Path) -> None:
    async with events_cluster(tmp_path, 2) as c:
        a, b = await c.connect(1), await c.connect(1)
        await subscribed(a, "x", "/default/room")
        await subscribed(b, "y", "/default/room")
        await subscribed(b, "watch", "/other/sentinel")
        await a.send({"type": "unsubscribe", "id": "x"})
        assert (await a.recv())["type"] == "unsubscribe_success"
        assert "ev|/default/room" in c.keys(1)  # b still subscribes it
        await b.send({"type": "unsubscribe", "id": "y"})
        assert (await b.recv())["type"] == "unsubscribe_success"
        # Within the grace period the key is still held: the publication reaches node 1 but
        # no subscription there. The memory broker delivers one node's publications in order,
        # so the sentinel arriving first proves nothing was sent.
        assert (await c.http_publish(0, "/default/room", ["gone"]))[0] == 200
        assert (await c.http_publish(0, "/other/sentinel", ["next"]))[0] == 200
        assert await frames(b, 1) == [("watch", "next")]
        await wait_until(lambda: "ev|/default/room" not in c.keys(1), timeout=5)
        received = c.metric(1, IN, direction="in")
        assert (await c.http_publish(0, "/default/room", ["unheard"]))[0] == 200
        assert (await c.http_publish(0, "/other/sentinel", ["next2"]))[0] == 200
        assert await frames(b, 1) == [("watch", "next2")]
        assert c.metric(1, IN, direction="in") == received + 1  # only the sentinel came
        # Closing a connection releases its keys too.
        await b.close()
        await wait_until(lambda: not c.keys(1), timeout=5)


ON_PUBLISH = """
EVENTS = []


def shout(event, context):
    EVENTS.append(event)
    return {"events": [
        {"id": e["id"], "payload": {**e["payload"], "text": e["payload"]["text"].upper()}}
        for e in event["events"]
    ]}
"""


async def test_on_publish_runs_once_on_the_publishing_node(tmp_path: Path) -> None:
    code = write_handlers(tmp_path / "fns", {"cluster_shout.py": ON_PUBLISH})
    api = events_api(code, namespaces={"default": {"on_publish": "cluster_shout.shout"}})
    async with events_cluster(tmp_path, 3, api) as c:
        subs = [await c.connect(i) for i in range(3)]
        for sub in subs:
            await subscribed(sub, "s", "/default/*")
        status, _, _ = await c.http_publish(1, "/default/room", [{"text": "hi"}])
        assert status == 200
        for sub in subs:
            assert await frames(sub, 1) == [("s", {"text": "HI"})]
        # The publisher subscribes too: its data frame and its publish_success, any order.
        reply = await subs[2].publish("p", "/default/room", [{"text": "ws"}])
        also = await subs[2].recv()
        types = {reply["type"], also["type"]}
        assert types == {"publish_success", "data"}
        own = reply if reply["type"] == "data" else also
        assert json.loads(own["event"]) == {"text": "WS"}
        for sub in subs[:2]:
            assert await frames(sub, 1) == [("s", {"text": "WS"})]
        invocations = sys.modules["cluster_shout"].EVENTS
        assert len(invocations) == 2


async def test_broker_outage_http_refused_websocket_local_only(tmp_path: Path) -> None:
    async with events_cluster(tmp_path, 2) as c:
        local, remote = await c.connect(0), await c.connect(1)
        await subscribed(local, "s", "/default/room")
        await subscribed(remote, "s", "/default/room")
        c.outage(0).down = True
        # HTTP: refused before anything is delivered, with a retryable AppSync-style error.
        status, body, headers = await c.http_publish(0, "/default/room", ["refused"])
        assert status == 503 and headers["Retry-After"] == "1"
        assert headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
        assert body["errors"][0]["errorType"] == "ServiceUnavailableException"
        # A request that is wrong anyway still gets its own answer.
        assert (await c.http_publish(0, "/nope/room", ["x"]))[0] == 400
        # WebSocket: this node's subscribers get it, the publisher gets publish_success.
        pub = await c.connect(0)
        reply = await pub.publish("p", "/default/room", ["local only"])
        assert reply["type"] == "publish_success" and reply["failed"] == []
        assert await frames(local, 1) == [("s", "local only")]
        assert c.metric(0, FAILED) == 2 and c.metric(1, IN, direction="in") == 0
        # The broker fails on the publication: 503 and nobody got it, the local subscribers
        # neither (issue 13: the other nodes are sent it first).
        c.outage(0).down = False
        c.outage(0).fail_publish = True
        status, body, _ = await c.http_publish(0, "/default/room", ["half"])
        assert status == 503 and "nothing was published" in body["errors"][0]["message"]
        assert c.metric(0, FAILED) == 3
        # Back: delivered everywhere; the remote node saw nothing of the outage.
        c.outage(0).fail_publish = False
        assert (await c.http_publish(0, "/default/room", ["back"]))[0] == 200
        assert await frames(local, 1) == [("s", "back")]
        assert await frames(remote, 1) == [("s", "back")]


async def amplify(options: dict[str, Any], ca_file: Path) -> asyncio.subprocess.Process:
    node = shutil.which("node")
    assert node is not None, "node is required (make install)"
    assert (ROOT / "node_modules" / "aws-amplify").is_dir(), "run npm install (make install)"
    return await asyncio.create_subprocess_exec(
        node,
        str(AMPLIFY),
        json.dumps({"apiKey": API_KEY, "channel": "/default/amplify", **options}),
        cwd=ROOT,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_amplify_publishes_on_one_node_and_subscribes_on_another(tmp_path: Path) -> None:
    """The real aws-amplify ``events`` client: one app subscribed through node 0, another
    publishing (WebSocket and HTTP) through node 1, over wss:// and https:// (spec §1.2)."""
    async with events_cluster(tmp_path, 2, tls={"certificate": "auto"}) as c:
        cas: list[Path] = []
        for gw in c.gateways:  # each node made its own development CA
            assert gw.tls is not None and gw.tls.ca_file is not None
            cas.append(gw.tls.ca_file)
        endpoints = [f"https://localhost:{c.port(i)}/event" for i in range(2)]
        sub = await amplify({"endpoint": endpoints[0], "role": "subscribe", "count": 2}, cas[0])
        try:
            await amplify_exchange(sub, endpoints, cas[1])
        finally:
            if sub.returncode is None:
                sub.kill()
                await sub.wait()


async def amplify_exchange(
    sub: asyncio.subprocess.Process, endpoints: list[str], publisher_ca: Path
) -> None:
    assert sub.stdout is not None
    ready = await asyncio.wait_for(sub.stdout.readline(), 30)
    if not ready:  # it failed before subscribing
        _, err = await sub.communicate()
        raise AssertionError(err.decode())
    assert json.loads(ready) == {"ready": True}, ready
    pub = await amplify({"endpoint": endpoints[1], "role": "publish"}, publisher_ca)
    out, err = await asyncio.wait_for(pub.communicate(), 45)
    assert pub.returncode == 0, err.decode() + out.decode()
    assert json.loads(out.decode().strip().splitlines()[-1]) == {
        "published": True,
        "failed": None,
    }
    out, err = await asyncio.wait_for(sub.communicate(), 45)
    assert sub.returncode == 0, err.decode() + out.decode()
    received = json.loads(out.decode().strip().splitlines()[-1])["received"]
    assert received == [
        {"via": "websocket", "from": endpoints[1]},
        {"via": "http", "from": endpoints[1]},
    ]
