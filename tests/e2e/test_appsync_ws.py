"""AppSync Events realtime protocol end to end (spec §2, §4) with a raw ``websockets`` client."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import websockets

from tests.conftest import StartGateway
from tests.e2e.appsync_support import API_KEY, SUBPROTOCOL, EventsClient, events_api


async def test_handshake_selects_subprotocol_and_acks(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    client = await EventsClient.connect(gw.port, init=False)
    assert client.ws.subprotocol == SUBPROTOCOL
    await client.send({"type": "connection_init"})
    assert await client.recv() == {"type": "connection_ack", "connectionTimeoutMs": 300000}
    await client.close()


async def test_subscribe_publish_data_as_json_strings(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    sub = await EventsClient.connect(gw.port)
    pub = await EventsClient.connect(gw.port)
    assert await sub.subscribe("s1", "default/channel") == {"type": "subscribe_success", "id": "s1"}
    reply = await pub.publish("p1", "/default/channel", [{"msg": "hi"}, 42])
    assert reply["type"] == "publish_success" and reply["id"] == "p1"
    assert [s["index"] for s in reply["successful"]] == [0, 1]
    assert reply["failed"] == []
    first, second = await sub.recv(), await sub.recv()
    assert first == {"type": "data", "id": "s1", "event": json.dumps({"msg": "hi"})}  # as published
    assert isinstance(second["event"], str) and json.loads(second["event"]) == 42
    await sub.close()
    await pub.close()


async def test_wildcards_deliver_once_per_subscription_in_order(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    sub = await EventsClient.connect(gw.port)
    for sub_id, channel in [
        ("exact", "/default/a/b"),
        ("ns", "/default/*"),
        ("mid", "/default/a/*"),
        ("other", "/other/*"),
        ("deeper", "/default/a/b/*"),
    ]:
        assert (await sub.subscribe(sub_id, channel))["type"] == "subscribe_success"
    pub = await EventsClient.connect(gw.port)
    for n in range(5):
        assert (await pub.publish(f"p{n}", "/default/a/b", [n]))["type"] == "publish_success"
    got = [await sub.recv() for _ in range(15)]
    by_sub: dict[str, list[int]] = {}
    for frame in got:
        assert frame["type"] == "data"
        by_sub.setdefault(frame["id"], []).append(json.loads(frame["event"]))
    assert by_sub == {"exact": [0, 1, 2, 3, 4], "ns": [0, 1, 2, 3, 4], "mid": [0, 1, 2, 3, 4]}
    # /default/* does not match /default itself; a namespace-only channel is valid.
    assert (await pub.publish("p9", "/default", ["root"]))["type"] == "publish_success"
    assert (await sub.subscribe("root", "/default"))["type"] == "subscribe_success"
    assert (await pub.publish("p10", "/default", ["root2"]))["type"] == "publish_success"
    assert await sub.recv() == {"type": "data", "id": "root", "event": '"root2"'}
    await sub.close()
    await pub.close()


async def test_error_replies_keep_the_connection_working(start_gateway: StartGateway) -> None:
    api = events_api()
    api["limits"] = {"max_subscriptions_per_connection": 2, "max_event_bytes": 100}
    gw = await start_gateway({"apis": [api]})
    c = await EventsClient.connect(gw.port)

    async def error_of(frame: dict[str, object]) -> tuple[str, str | None, str]:
        await c.send(frame)
        reply = await c.recv()
        return reply["type"], reply.get("id"), reply["errors"][0]["errorType"]

    await c.ws.send("not json")
    assert (await c.recv())["errors"][0]["errorType"] == "InvalidInputError"
    assert await error_of({"type": "nope", "id": "x"}) == ("error", "x", "UnsupportedOperation")
    assert await error_of({"type": "subscribe", "id": "bad id!", "channel": "/default/a"}) == (
        "subscribe_error",
        "bad id!",
        "BadRequestException",
    )
    auth = {"x-api-key": API_KEY}
    for channel in ["/default/a*", "/default/*/x", "/a/b/c/d/e/f", "/-x", "/*", ""]:
        assert await error_of(
            {"type": "subscribe", "id": "s", "channel": channel, "authorization": auth}
        ) == ("subscribe_error", "s", "BadRequestException"), channel
    assert await error_of(
        {"type": "subscribe", "id": "s", "channel": "/missing/a", "authorization": auth}
    ) == ("subscribe_error", "s", "BadRequestException")
    assert await error_of(
        {
            "type": "publish",
            "id": "p",
            "channel": "/default/*",
            "events": ["1"],
            "authorization": auth,
        }
    ) == ("publish_error", "p", "BadRequestException")
    assert await error_of(
        {
            "type": "publish",
            "id": "p",
            "channel": "/default/a",
            "events": ["1"] * 6,
            "authorization": auth,
        }
    ) == ("publish_error", "p", "BadRequestException")
    assert await error_of(
        {
            "type": "publish",
            "id": "p",
            "channel": "/default/a",
            "events": ["{oops"],
            "authorization": auth,
        }
    ) == ("publish_error", "p", "BadRequestException")
    assert await error_of(
        {
            "type": "publish",
            "id": "p",
            "channel": "/default/a",
            "events": ['"' + "x" * 200 + '"'],
            "authorization": auth,
        }
    ) == ("publish_error", "p", "BadRequestException")
    assert await error_of(
        {"type": "publish", "id": "p", "channel": "/default/a", "events": ["1"]}
    ) == ("publish_error", "p", "UnauthorizedException")
    assert await error_of({"type": "unsubscribe", "id": "never"}) == (
        "unsubscribe_error",
        "never",
        "UnknownOperationError",
    )
    assert (await c.subscribe("s1", "/default/a"))["type"] == "subscribe_success"
    assert await error_of(
        {"type": "subscribe", "id": "s1", "channel": "/default/b", "authorization": auth}
    ) == ("subscribe_error", "s1", "DuplicatedOperationError")
    assert (await c.subscribe("s2", "/default/b"))["type"] == "subscribe_success"
    assert await error_of(
        {"type": "subscribe", "id": "s3", "channel": "/default/c", "authorization": auth}
    ) == ("subscribe_error", "s3", "MaxSubscriptionsReachedError")
    # Still working: unsubscribe, then publishing no longer reaches s1.
    await c.send({"type": "unsubscribe", "id": "s1"})
    assert await c.recv() == {"type": "unsubscribe_success", "id": "s1"}
    assert (await c.publish("p1", "/default/a", [1]))["type"] == "publish_success"
    # The publisher is subscribed too: it gets the data frame (sent before publish_success).
    assert await c.publish("p2", "/default/b", [2]) == {"type": "data", "id": "s2", "event": "2"}
    assert (await c.recv())["type"] == "publish_success"
    await c.close()


async def test_connect_auth_from_subprotocol_or_headers(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    bad = await EventsClient.connect(gw.port, {"host": "x", "x-api-key": "da2-wrong"}, init=False)
    reply = await bad.recv()
    assert reply == {
        "type": "connection_error",
        "errors": [
            {
                "errorType": "UnauthorizedException",
                "message": "You are not authorized to make this call.",
            }
        ],
    }
    await bad.ws.wait_closed()
    # Native clients (Swift, Android): only the subprotocol, auth as upgrade headers.
    async with websockets.connect(
        f"ws://127.0.0.1:{gw.port}/event/realtime",
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"x-api-key": API_KEY},
    ) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "n1",
                    "channel": "/default/x",
                    "authorization": {"X-Api-Key": API_KEY},
                }
            )
        )
        assert json.loads(await ws.recv()) == {"type": "subscribe_success", "id": "n1"}


async def test_http_publish_reaches_subscribers(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    sub = await EventsClient.connect(gw.port)
    assert (await sub.subscribe("s", "/default/*"))["type"] == "subscribe_success"
    url = f"http://127.0.0.1:{gw.port}/event"
    async with aiohttp.ClientSession() as http:
        body = {"channel": "default/news", "events": [json.dumps({"a": 1}), '"two"']}
        async with http.post(url, json=body, headers={"x-api-key": API_KEY}) as resp:
            assert resp.status == 200
            result = await resp.json()
        assert result["failed"] == [] and [s["index"] for s in result["successful"]] == [0, 1]
        assert all(len(s["identifier"]) == 36 for s in result["successful"])
        assert await sub.recv() == {"type": "data", "id": "s", "event": '{"a": 1}'}
        assert await sub.recv() == {"type": "data", "id": "s", "event": '"two"'}
        async with http.post(url, json=body) as resp:
            assert resp.status == 401
            assert resp.headers["x-amzn-ErrorType"] == "UnauthorizedException"
            # errors[] for Android/Swift; the top-level message is what Amplify JS shows.
            denied = "You are not authorized to make this call."
            assert await resp.json() == {
                "errors": [{"errorType": "UnauthorizedException", "message": denied}],
                "message": denied,
            }
        async with http.post(
            url, json={"channel": "/default/*", "events": ["1"]}, headers={"x-api-key": API_KEY}
        ) as resp:
            assert resp.status == 400
            refused = await resp.json()
            assert refused["errors"][0]["errorType"] == "BadRequestException"
            assert refused["message"] == refused["errors"][0]["message"] != ""
        async with http.post(url, data=b"{", headers={"x-api-key": API_KEY}) as resp:
            assert resp.status == 400
        async with http.options(url) as resp:
            assert resp.status == 200
            assert "x-api-key" in resp.headers["Access-Control-Allow-Headers"]
    await sub.close()


async def test_keep_alive_and_max_duration(start_gateway: StartGateway, tmp_path: Path) -> None:
    api = events_api()
    api["limits"] = {
        "keep_alive_interval_s": 0.2,
        "max_connection_duration_s": 3,
        "connection_timeout_ms": 1000,
    }
    gw = await start_gateway({"apis": [api]})
    c = await EventsClient.connect(gw.port, init=False)
    await c.send({"type": "connection_init"})
    assert await c.recv() == {"type": "connection_ack", "connectionTimeoutMs": 1000}
    kas = 0
    while kas < 3:
        frame = json.loads(await c.ws.recv())
        assert frame == {"type": "ka"}
        kas += 1
    # The connection is closed once it reaches its maximum duration.
    await c.ws.wait_closed()
    assert c.ws.close_code == 1000


async def test_connect_auth_in_the_query_string(start_gateway: StartGateway) -> None:
    import base64

    gw = await start_gateway({"apis": [events_api()]})
    host = f"127.0.0.1:{gw.port}"
    header = base64.b64encode(json.dumps({"host": host, "x-api-key": API_KEY}).encode()).decode()
    async with websockets.connect(
        f"ws://{host}/event/realtime?header={header}&payload=e30=",
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
