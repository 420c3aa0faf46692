"""The Pusher HTTP API driven by the real ``pusher`` Python SDK (pusher spec §3)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import aiohttp
import pusher
import pytest
import websockets

from tests.e2e.pusher_support import APP_ID, KEY, SECRET, Client, pusher_app, sdk
from tests.e2e.support import wait_until


async def test_trigger_many_channels_with_exclusion_and_info(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    a, b = await Client.connect(gw), await Client.connect(gw)
    for c in (a, b):
        await c.subscribe("one")
        await c.subscribe("two")
    # socket_id excludes the sender (a) from the delivery.
    assert await p.trigger(["one", "two"], "ev", "payload", socket_id=a.socket_id) == {}
    got = [await b.recv(), await b.recv()]
    assert sorted(f["channel"] for f in got) == ["one", "two"]
    assert all(f["data"] == "payload" for f in got)  # the string exactly as sent
    await p.trigger("one", "marker", "m")
    assert (await a.recv())["event"] == "marker"  # a got nothing before the marker
    raw = await p.trigger_batch(
        [
            {"channel": "one", "name": "b1", "data": "x", "info": "subscription_count"},
            {"channel": "two", "name": "b2", "data": "y"},
        ]
    )
    assert raw == {"batch": [{"subscription_count": 2}, {}]}
    assert (await a.recv())["event"] == "b1"
    assert (await a.recv())["event"] == "b2"


async def test_trigger_response_with_info(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    await c.subscribe(
        "presence-r", sdk(gw).authenticate("presence-r", c.socket_id, {"user_id": "u"})
    )
    url = f"http://127.0.0.1:{gw.port}/apps/{APP_ID}/events"
    client = pusher.Pusher(
        app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=gw.port, ssl=False
    )
    body = json.dumps(
        {
            "name": "e",
            "channels": ["presence-r"],
            "data": "{}",
            "info": "user_count,subscription_count",
        }
    )
    # Sign the request exactly as the SDK's request builder does.
    from pusher.http import Request

    req = Request(client._pusher_client, "POST", f"/apps/{APP_ID}/events", json.loads(body))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url,
            params=req.query_params,
            data=req.body,
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == 200
        assert await r.json() == {
            "channels": {"presence-r": {"subscription_count": 1, "user_count": 1}}
        }


async def test_channel_queries(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    a, b = await Client.connect(gw), await Client.connect(gw)
    await a.subscribe("news")
    await b.subscribe("news")
    await a.subscribe(
        "presence-lobby", p.authenticate("presence-lobby", a.socket_id, {"user_id": "1"})
    )
    await b.subscribe(
        "presence-lobby", p.authenticate("presence-lobby", b.socket_id, {"user_id": "2"})
    )
    assert await p.channels_info() == {"channels": {"news": {}, "presence-lobby": {}}}
    assert await p.channels_info(prefix_filter="presence-", attributes=["user_count"]) == {
        "channels": {"presence-lobby": {"user_count": 2}}
    }
    assert await p.channel_info("news", ["subscription_count"]) == {
        "occupied": True,
        "subscription_count": 2,
    }
    assert await p.channel_info("empty") == {"occupied": False}
    with pytest.raises(pusher.errors.PusherBadRequest):
        await p.channels_info(attributes=["user_count"])  # user_count needs the presence- prefix
    with pytest.raises(pusher.errors.PusherBadRequest):
        await p.users_info("news")


async def test_terminate_user_connections_sdk_path(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    a, b, other = await Client.connect(gw), await Client.connect(gw), await Client.connect(gw)
    for c, uid in ((a, "42"), (b, "42"), (other, "7")):
        auth = p.authenticate_user(c.socket_id, {"id": uid})
        await c.send("pusher:signin", auth)
        ok = await c.expect("pusher:signin_success")
        assert ok["data"]["user_data"] == auth["user_data"]
    # The py SDK posts to /users/{id}/terminate_connections (no /apps/{id}).
    assert await p.terminate_user_connections("42") == {}
    for c in (a, b):
        err = await c.expect("pusher:error")
        assert err["data"] == {"code": 4009, "message": "You got disconnected by the app."}
        with pytest.raises(websockets.ConnectionClosed):
            await c.recv()
        assert c.ws.close_code == 4009
    await other.send("pusher:ping")
    await other.expect("pusher:pong")


async def test_node_sdk_path_for_terminate(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    c = await Client.connect(gw)
    await c.send("pusher:signin", p.authenticate_user(c.socket_id, {"id": "9"}))
    await c.expect("pusher:signin_success")
    client = p.client
    from pusher.http import Request

    req = Request(
        client._pusher_client, "POST", f"/apps/{APP_ID}/users/9/terminate_connections", {}
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.port}{req.path}", params=req.query_params, data=req.body
        ) as r,
    ):
        assert r.status == 200 and await r.json() == {}
    assert (await c.expect("pusher:error"))["data"]["code"] == 4009


async def test_bad_signatures_and_stale_timestamps(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    wrong = sdk(gw, secret="not-the-secret")
    with pytest.raises(pusher.errors.PusherBadAuth):
        await wrong.trigger("c", "e", "d")
    other_key = sdk(gw, key="other-key")
    with pytest.raises(pusher.errors.PusherBadAuth):
        await other_key.trigger("c", "e", "d")
    unknown_app = sdk(gw, app_id="999")
    with pytest.raises(pusher.errors.PusherBadStatus, match="404"):
        await unknown_app.trigger("c", "e", "d")

    def signed(ts: int | str, body: bytes) -> dict[str, str]:
        params = {
            "auth_key": KEY,
            "auth_timestamp": str(ts),
            "auth_version": "1.0",
            "body_md5": hashlib.md5(body).hexdigest(),
        }
        to_sign = "POST\n/apps/123/events\n" + "&".join(f"{k}={params[k]}" for k in sorted(params))
        params["auth_signature"] = hmac.new(
            SECRET.encode(), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        return params

    body = json.dumps({"name": "e", "channel": "c", "data": "d"}).encode()
    url = f"http://127.0.0.1:{gw.port}/apps/{APP_ID}/events"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, params=signed(int(time.time()), body), data=body) as r:
            assert r.status == 200 and await r.json() == {}
        async with http.post(url, params=signed(int(time.time()) - 601, body), data=body) as r:
            assert r.status == 401
            error = await r.json()
            assert error["code"] == 401 and "Timestamp expired" in error["error"]
        # A body that is not the one signed.
        async with http.post(url, params=signed(int(time.time()), body), data=body + b" ") as r:
            assert r.status == 401
        async with http.post(url, data=body) as r:
            assert r.status == 401
        # Issue 13 item 6: a timestamp that is not whole seconds is refused, however it is
        # signed (float("nan") used to pass the window: replayable forever).
        for ts in ("nan", "inf", "-inf", f"{time.time():.3f}", "1e12"):
            async with http.post(url, params=signed(ts, body), data=body) as r:
                assert r.status == 401, ts
                assert "auth_timestamp" in (await r.json())["error"], ts


async def test_invalid_events(start_gateway):
    gw = await start_gateway(
        {"apis": [pusher_app(max_event_payload_in_kb=1, max_event_batch_size=2)]}
    )
    p = sdk(gw)
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        await p.trigger("c", "e", "x" * 1100)
    with pytest.raises(pusher.errors.PusherBadRequest):
        await p.trigger_batch([{"channel": "c", "name": "e", "data": "d"}] * 3)
    c = await Client.connect(gw)
    await c.subscribe("ok")
    # All or nothing: one bad event rejects the batch, nothing is delivered.
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        await p.trigger_batch(
            [
                {"channel": "ok", "name": "e", "data": "d"},
                {"channel": "ok", "name": "e", "data": "x" * 1100},
            ]
        )
    await p.trigger("ok", "after", "d")
    assert (await c.recv())["event"] == "after"


async def test_rate_limited_backend_events(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(max_backend_events_per_sec=2)]})
    p = sdk(gw)
    statuses = []
    for _ in range(4):
        try:
            await p.trigger(["a", "b"], "e", "d")
            statuses.append(200)
        except pusher.errors.PusherBadStatus as exc:
            assert "429" in str(exc)
            statuses.append(429)
    assert 429 in statuses and statuses[0] == 200


async def test_server_to_user(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    a, b = await Client.connect(gw), await Client.connect(gw)
    await a.send("pusher:signin", p.authenticate_user(a.socket_id, {"id": "5", "name": "A"}))
    await a.expect("pusher:signin_success")
    ok = await a.subscribe("#server-to-user-5")
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    await b.send("pusher:signin", p.authenticate_user(b.socket_id, {"id": "5"}))
    await b.expect("pusher:signin_success")
    await p.send_to_user("5", "note", {"n": 1})
    for c in (a, b):  # delivered to every socket of the user, subscribed or not, once
        frame = await c.expect("note")
        assert json.loads(frame["data"]) == {"n": 1}
    await p.trigger("#server-to-user-5", "marker", "m")
    assert (await a.recv())["event"] == "marker"


async def test_cache_channel(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    c = await Client.connect(gw)
    await c.subscribe("cache-weather")
    await c.expect("pusher:cache_miss")
    await p.trigger("cache-weather", "update", "sunny")
    assert (await c.recv())["data"] == "sunny"
    late = await Client.connect(gw)
    await late.subscribe("cache-weather")
    cached = await late.recv()
    assert cached == {"event": "update", "channel": "cache-weather", "data": "sunny"}
    await p.trigger("cache-other", "x", "y")
    await wait_until(lambda: "cache-other" in gw.front_doors[0].app.cache)
