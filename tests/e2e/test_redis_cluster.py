"""Issue 6 end to end: several real ``sockway serve`` processes on one real Redis behave as one
gateway for all three APIs, lose no ghosts when a node is SIGKILLed, and ride out a Redis
restart (errors that say "retry", then recovery, no crash)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import websockets
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.appsync_support import API_KEY, EventsClient
from tests.e2e.pusher_support import Client, sdk
from tests.e2e.redis_cluster import Node, cluster_config, start_nodes
from tests.e2e.test_pusher_webhooks import Receiver
from tests.redis_support import RedisClusterServers, RedisServer, redis_url

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        await node.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


def management(node: Node, retries: int = 3) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{node.port}/dev",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": retries, "mode": "standard"}),
    )


async def ws_client(node: Node) -> tuple[websockets.ClientConnection, str]:
    ws = await websockets.connect(f"ws://127.0.0.1:{node.port}/dev")
    await ws.send('{"action":"whoami"}')
    return ws, str(await asyncio.wait_for(ws.recv(), 10))


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value without raising."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            error: BaseException | None = None
        except Exception as exc:
            error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s (last error: {error!r})")
        await asyncio.sleep(0.05)


async def http(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, **kwargs) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def test_post_to_connection_reaches_a_client_on_another_node(
    tmp_path: Path, nodes: list[Node]
) -> None:
    a, b = await start_nodes(cluster_config(tmp_path, redis_url()), 2)
    nodes += [a, b]
    ws, conn_id = await ws_client(a)
    client_b = management(b)
    await asyncio.to_thread(client_b.post_to_connection, ConnectionId=conn_id, Data=b"from B")
    assert await asyncio.wait_for(ws.recv(), 10) == "from B"
    info = await asyncio.to_thread(client_b.get_connection, ConnectionId=conn_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1"
    await ws.close()
    await eventually(lambda: _gone(client_b, conn_id))


async def _gone(client: Any, conn_id: str) -> bool:
    try:
        await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=b"x")
    except client.exceptions.GoneException:
        return True
    return False


async def test_publish_reaches_every_node_once_on_all_three_apis(
    tmp_path: Path, nodes: list[Node]
) -> None:
    cluster = await start_nodes(cluster_config(tmp_path, redis_url()), 3)
    nodes += cluster
    # websocket API: one member of "room" per node, joined through node 0.
    ws_clients = [await ws_client(n) for n in cluster]
    for _, conn_id in ws_clients:
        status, _ = await http(
            "PUT", f"http://127.0.0.1:{cluster[0].port}/dev/@connections/{conn_id}/channels/room"
        )
        assert status == 204
    # Pusher: one subscriber of "news" per node.
    pushers = [await Client.connect(n) for n in cluster]
    for p in pushers:
        assert (await p.subscribe("news"))["event"] == "pusher_internal:subscription_succeeded"
    # AppSync Events: one subscriber of /default/* per node.
    events = [await EventsClient.connect(n.port) for n in cluster]
    for i, e in enumerate(events):
        assert (await e.subscribe(f"s{i}", "/default/*"))["type"] == "subscribe_success"

    for i, node in enumerate(cluster):
        status, _ = await http(
            "POST", f"http://127.0.0.1:{node.port}/dev/@channels/room", data=f"ws {i}".encode()
        )
        assert status == 200
        await sdk(node).trigger("news", "e", {"n": i})
        status, body = await http(
            "POST",
            f"http://127.0.0.1:{node.port}/event",
            json={"channel": "/default/a/b", "events": [json.dumps({"n": i})]},
            headers={"x-api-key": API_KEY},
        )
        assert status == 200, body

    expected = {0, 1, 2}
    for ws, _ in ws_clients:
        got = {int((await asyncio.wait_for(ws.recv(), 10)).split()[1]) for _ in range(3)}
        assert got == expected
    for p in pushers:
        got = {json.loads((await p.expect("e"))["data"])["n"] for _ in range(3)}
        assert got == expected
    for e in events:
        frames = [await e.recv() for _ in range(3)]
        assert {json.loads(f["event"])["n"] for f in frames} == expected
    # Exactly once: the next thing each client sees is a marker sent after everything else.
    await http("POST", f"http://127.0.0.1:{cluster[1].port}/dev/@channels/room", data=b"end 9")
    await sdk(cluster[1]).trigger("news", "end", {})
    await http(
        "POST",
        f"http://127.0.0.1:{cluster[1].port}/event",
        json={"channel": "/default/end", "events": ['"end"']},
        headers={"x-api-key": API_KEY},
    )
    for ws, _ in ws_clients:
        assert await asyncio.wait_for(ws.recv(), 10) == "end 9"
    for p in pushers:
        await p.expect("end")
    for e in events:
        assert (await e.recv())["event"] == '"end"'


async def _presence_ok(node: Node, user: str) -> tuple[Client, dict[str, Any]]:
    c = await Client.connect(node)
    auth = sdk(node).authenticate("presence-room", c.socket_id, {"user_id": user})
    ok = await c.subscribe("presence-room", auth)
    assert ok["event"] == "pusher_internal:subscription_succeeded", ok
    return c, ok


async def _presence(node: Node, user: str) -> Client:
    return (await _presence_ok(node, user))[0]


async def test_presence_and_channel_info_agree_on_every_node(
    tmp_path: Path, nodes: list[Node]
) -> None:
    cluster = await start_nodes(cluster_config(tmp_path, redis_url()), 3)
    nodes += cluster
    await _presence(cluster[0], "u1")
    await _presence(cluster[1], "u2")
    third = await _presence_ok(cluster[2], "u1")  # u1's second socket, on another node
    # The subscribe answer on node 2 lists the members of every node.
    assert json.loads(third[1]["data"])["presence"]["count"] == 2
    for node in cluster:
        p = sdk(node)
        info = await eventually(
            lambda p=p: _info_if(p, {"occupied": True, "user_count": 2, "subscription_count": 3})
        )
        assert info
        users = await p.users_info("presence-room")
        assert sorted(u["id"] for u in users["users"]) == ["u1", "u2"]
        listing = await p.channels_info(prefix_filter="presence-", attributes=["user_count"])
        assert listing == {"channels": {"presence-room": {"user_count": 2}}}


async def _info_if(p: Any, expected: dict[str, Any]) -> bool:
    info = await p.channel_info("presence-room", ["user_count", "subscription_count"])
    return bool(info == expected)


async def test_sigkill_clears_connections_and_fires_webhooks_once(
    tmp_path: Path, nodes: list[Node], receiver: Receiver
) -> None:
    a, b, c = await start_nodes(cluster_config(tmp_path, redis_url(), receiver.url), 3)
    nodes += [a, b, c]
    watcher = await _presence(a, "u1")
    await _presence(b, "u2")
    solo = await Client.connect(b)
    await solo.subscribe("solo")
    _, doomed = await ws_client(b)
    await watcher.expect("pusher_internal:member_added")
    await eventually(lambda: _webhooks(receiver, "channel_occupied", "solo") == 1)

    assert await b.signal(signal.SIGKILL) == -signal.SIGKILL

    removed = await watcher.expect("pusher_internal:member_removed", timeout=10)
    assert json.loads(removed["data"]) == {"user_id": "u2"}
    await eventually(lambda: _webhooks(receiver, "channel_vacated", "solo") == 1)
    await eventually(lambda: _webhooks(receiver, "member_removed", "presence-room") == 1)
    for node in (a, c):
        p = sdk(node)
        assert await eventually(
            lambda p=p: _info_if(p, {"occupied": True, "user_count": 1, "subscription_count": 1})
        )
        assert await p.channel_info("solo") == {"occupied": False}
    with pytest.raises(ClientError) as gone:
        await asyncio.to_thread(management(c).post_to_connection, ConnectionId=doomed, Data=b"x")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    # Fired once, not once per surviving node.
    await asyncio.sleep(1.5)
    assert _webhooks(receiver, "channel_vacated", "solo") == 1
    assert _webhooks(receiver, "member_removed", "presence-room") == 1


async def _broker_is(node: Node, state: str) -> bool:
    _, body = await http("GET", f"http://127.0.0.1:{node.port}/health")
    return bool(body["broker"] == state)


async def _posted(client: Any, conn_id: str, data: bytes) -> bool:
    await asyncio.to_thread(client.post_to_connection, ConnectionId=conn_id, Data=data)
    return True


def _webhooks(receiver: Receiver, name: str, channel: str) -> int:
    return sum(1 for e in receiver.events() if e["name"] == name and e["channel"] == channel)


async def test_redis_restart_gives_retryable_errors_then_recovers(
    tmp_path: Path, nodes: list[Node]
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        a, b = await start_nodes(cluster_config(tmp_path, redis.url), 2)
        nodes += [a, b]
        ws_a, id_a = await ws_client(a)
        ws_b, id_b = await ws_client(b)
        for conn_id in (id_a, id_b):
            await http("PUT", f"http://127.0.0.1:{a.port}/dev/@connections/{conn_id}/channels/room")
        redis.stop()
        await eventually(lambda: _broker_is(a, "unreachable"))

        # Cluster operations fail fast with a retryable 503; local traffic keeps flowing.
        started = time.monotonic()
        status, body = await http(
            "POST", f"http://127.0.0.1:{a.port}/dev/@channels/room", data=b"lost"
        )
        assert status == 503 and "retry" in body["message"], body
        once = management(a, retries=1)
        with pytest.raises(ClientError) as err:
            await asyncio.to_thread(once.post_to_connection, ConnectionId=id_b, Data=b"x")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert time.monotonic() - started < 10
        await asyncio.to_thread(once.post_to_connection, ConnectionId=id_a, Data=b"local")
        assert await asyncio.wait_for(ws_a.recv(), 5) == "local"
        await ws_a.send('{"action":"whoami"}')
        assert await asyncio.wait_for(ws_a.recv(), 5) == id_a

        redis.start()  # same port, empty: the nodes rewrite their share
        await eventually(lambda: _broker_is(a, "connected"), timeout=20)
        await eventually(
            lambda: (
                asyncio.to_thread(
                    management(a, retries=1).post_to_connection, ConnectionId=id_b, Data=b"back"
                )
                or True
            ),
            timeout=20,
        )
        assert await asyncio.wait_for(ws_b.recv(), 5) == "back"
        status, _ = await http("POST", f"http://127.0.0.1:{b.port}/dev/@channels/room", data=b"all")
        assert status == 200
        assert await asyncio.wait_for(ws_a.recv(), 5) == "all"
        assert await asyncio.wait_for(ws_b.recv(), 5) == "all"
        assert a.alive and b.alive
        assert "Traceback" not in a.log() + b.log()
    finally:
        redis.stop()


async def test_nodes_on_a_redis_cluster_act_as_one_gateway(
    tmp_path: Path, nodes: list[Node]
) -> None:
    """A Redis Cluster (3 primaries), each gateway pointed at a different cluster node: every
    broker finds the primary that holds the gateway's keys (one hash tag) by itself, and the
    nodes behave as one gateway (@connections across nodes, Pusher publish and channel info)."""
    servers = RedisClusterServers(tmp_path / "redis-cluster").start()
    try:
        prefix = f"test-{uuid.uuid4().hex[:12]}"
        configs = []
        for i in range(2):
            (tmp_path / f"n{i}").mkdir()
            configs.append(cluster_config(tmp_path / f"n{i}", servers.url(i), key_prefix=prefix))
        a, b = [await Node(config).start() for config in configs]
        nodes += [a, b]
        ws, conn_id = await ws_client(a)
        client_b = management(b)
        await asyncio.to_thread(client_b.post_to_connection, ConnectionId=conn_id, Data=b"hi")
        assert await asyncio.wait_for(ws.recv(), 10) == "hi"
        subscriber = await Client.connect(a)
        ok = await subscriber.subscribe("news")
        assert ok["event"] == "pusher_internal:subscription_succeeded"
        await sdk(b).trigger("news", "flash", {"n": 1})
        got = await subscriber.expect("flash")
        assert json.loads(got["data"]) == {"n": 1}
        assert await sdk(b).channel_info("news", ["subscription_count"]) == {
            "occupied": True,
            "subscription_count": 1,
        }
        for node in (a, b):
            status, health = await http("GET", f"http://127.0.0.1:{node.port}/health")
            assert status == 200 and health["broker"] == "connected"
        await ws.close()
        await subscriber.close()
    finally:
        for node in nodes:
            await node.stop()
        servers.stop()
