"""The console against the websocket and Pusher front doors (issue 16 "What to build" 1):
publishing to a websocket API's channel (``api/publish`` → ``WebSocketFrontDoor.publish_text``,
as ``POST /{stage}/@channels/{name}`` — README "Channels") and the Pusher presence membership
and signed-in user each connection shows in ``api/state`` (``PusherFrontDoor.connection_details``).
Real gateway, real websocket clients, Pusher auth signed by the real ``pusher`` SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from tests.conftest import StartGateway
from tests.e2e.appsync_support import events_api
from tests.e2e.pusher_support import Client, pusher_app, sdk
from tests.e2e.support import api, handlers_dir
from tests.redis_support import RedisServer

ACTION = {"X-Sockway-Console": "1"}


async def _state(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{port}/_sockway/api/state") as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def _publish(
    http: aiohttp.ClientSession, port: int, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/_sockway/api/publish"
    async with http.post(url, json=body, headers=ACTION) as r:
        return r.status, await r.json()


def _connections(state: dict[str, Any], api_name: str) -> list[dict[str, Any]]:
    (view,) = [a for a in state["apis"] if a["name"] == api_name]
    return view["connections"]  # type: ignore[no-any-return]


async def _no_frame(ws: websockets.ClientConnection) -> None:
    """Nothing is waiting for ``ws``: an echo round trip comes back first (frames keep order)."""
    await ws.send(json.dumps({"action": "echo", "probe": True}))
    assert json.loads(await ws.recv()) == {"action": "echo", "probe": True}


async def test_publish_to_a_websocket_channel(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    base = f"http://127.0.0.1:{gw.port}"
    async with (
        aiohttp.ClientSession() as http,
        websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", user_agent_header="member") as member,
        websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", user_agent_header="other") as other,
    ):
        by_agent = {c["userAgent"]: c for c in _connections(await _state(http, gw.port), "t")}
        member_id = by_agent["member"]["id"]
        async with http.put(f"{base}/dev/@connections/{member_id}/channels/room") as r:
            assert r.status == 204
        by_agent = {c["userAgent"]: c for c in _connections(await _state(http, gw.port), "t")}
        assert by_agent["member"]["channels"] == ["room"] and by_agent["other"]["channels"] == []

        status, out = await _publish(
            http, gw.port, {"api": "t", "channel": "room", "data": "from the console"}
        )
        assert (status, out) == (200, {"delivered": 1})
        assert await asyncio.wait_for(member.recv(), 5) == "from the console"
        await _no_frame(other)  # not a member: nothing for it
        # The publish is in the channel's tail view, with what it delivered.
        async with http.get(f"{base}/_sockway/api/state?channel=t/room") as r:
            tail = (await r.json())["tail"]
        published = [i for i in tail if i["kind"] == "publish"]
        assert published[-1]["payload"] == "from the console"
        assert published[-1]["detail"]["delivered"] == 1

        # A channel nobody joined: accepted, delivered to nobody (channels exist by use).
        status, out = await _publish(http, gw.port, {"api": "t", "channel": "empty", "data": "x"})
        assert (status, out) == (200, {"delivered": 0})
        await _no_frame(member)

        # Clear errors: an invalid channel name, an API that does not exist.
        status, out = await _publish(http, gw.port, {"api": "t", "channel": "no spaces"})
        assert status == 400
        assert out["message"].startswith("invalid channel name 'no spaces': 1-256 characters")
        status, out = await _publish(http, gw.port, {"api": "t", "channel": ""})
        assert status == 400 and "invalid channel name" in out["message"]
        status, out = await _publish(http, gw.port, {"api": "nope", "channel": "room"})
        assert (status, out) == (404, {"message": "no API 'nope' to publish to"})
        async with http.post(f"{base}/_sockway/api/publish", data=b"not json", headers=ACTION) as r:
            assert r.status == 400 and "body must be a JSON object" in await r.text()
        await _no_frame(member)  # none of the refused publishes reached the member


async def test_pusher_presence_membership_is_shown(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    ann = await Client.connect(gw)
    bob = await Client.connect(gw)
    ok = await ann.subscribe(
        "presence-room",
        p.authenticate("presence-room", ann.socket_id, {"user_id": "ann", "user_info": {"a": 1}}),
    )
    assert ok["event"] == "pusher_internal:subscription_succeeded", ok
    ok = await bob.subscribe(
        "presence-room", p.authenticate("presence-room", bob.socket_id, {"user_id": 7})
    )
    assert ok["event"] == "pusher_internal:subscription_succeeded", ok
    added = await ann.expect("pusher_internal:member_added")
    assert json.loads(added["data"])["user_id"] == 7
    assert (await bob.subscribe("news"))["event"] == "pusher_internal:subscription_succeeded"
    await ann.send("pusher:signin", p.authenticate_user(ann.socket_id, {"id": "ann-user"}))
    await ann.expect("pusher:signin_success")

    async with aiohttp.ClientSession() as http:
        shown = {c["id"]: c for c in _connections(await _state(http, gw.port), "p")}
        assert set(shown) == {ann.socket_id, bob.socket_id}
        assert shown[ann.socket_id]["presence"] == {"presence-room": "ann"}
        assert shown[ann.socket_id]["userId"] == "ann-user"
        assert shown[ann.socket_id]["channels"] == ["presence-room"]
        assert shown[bob.socket_id]["presence"] == {"presence-room": "7"}  # an integer id
        assert shown[bob.socket_id]["userId"] is None  # bob never signed in
        assert shown[bob.socket_id]["channels"] == ["news", "presence-room"]

        # Leaving the presence channel ends the membership the console shows.
        await bob.send("pusher:unsubscribe", {"channel": "presence-room"})
        removed = await ann.expect("pusher_internal:member_removed")
        assert json.loads(removed["data"])["user_id"] == 7
        shown = {c["id"]: c for c in _connections(await _state(http, gw.port), "p")}
        assert shown[bob.socket_id]["presence"] == {}
        assert shown[bob.socket_id]["channels"] == ["news"]
        assert shown[ann.socket_id]["presence"] == {"presence-room": "ann"}
    await ann.close()
    await bob.close()


async def test_presence_auth_signature_is_masked(start_gateway: StartGateway) -> None:
    """The membership shows the user id; the subscribe frame's signature is masked in the tail."""
    channel = "presence-room"
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    c = await Client.connect(gw)
    auth = p.authenticate(channel, c.socket_id, {"user_id": "u1"})
    await c.subscribe(channel, auth)
    async with aiohttp.ClientSession() as http:
        state = await _state(http, gw.port)
    assert _connections(state, "p")[0]["presence"] == {channel: "u1"}
    signature = auth["auth"].split(":", 1)[1]
    assert signature not in json.dumps(state)  # the tail masks the subscribe frame's auth
    await c.close()


async def test_publish_while_the_broker_is_down_is_a_503_on_every_door(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """docs/brokers.md "Delivery guarantee": a publication the broker did not take reached
    nobody, and the console says so as the HTTP APIs do — 503, not a 400 or a 500."""
    redis = RedisServer(tmp_path / "redis").start()
    broker = {"url": redis.url, "key_prefix": f"console-{tmp_path.name}", "heartbeat_s": 0.2}
    apis = [api(handlers_dir(tmp_path)), pusher_app(), events_api()]
    gw = await start_gateway({"apis": apis, "broker": broker})
    targets = [
        {"api": "t", "channel": "room", "data": "x"},
        {"api": pusher_app()["name"], "channel": "room", "data": "x", "event": "e"},
        {"api": events_api()["name"], "channel": "default/room", "data": '{"a":1}'},
    ]
    try:
        async with aiohttp.ClientSession() as http:
            for body in targets:  # while Redis is up: published
                status, answer = await _publish(http, gw.port, body)
                assert status == 200, (body, answer)
            redis.stop()
            async with asyncio.timeout(15):
                while (await _health(http, gw.port)) != "unreachable":
                    await asyncio.sleep(0.05)
            for body in targets:
                status, answer = await _publish(http, gw.port, body)
                assert status == 503, (body, status, answer)
                assert answer["message"].startswith("not published, nobody got it"), answer
    finally:
        redis.stop()


async def _health(http: aiohttp.ClientSession, port: int) -> str:
    async with http.get(f"http://127.0.0.1:{port}/health") as r:
        return str((await r.json())["broker"])
