"""Pusher protocol v7 over a real socket (pusher spec §1), auth signed by the real py SDK."""

from __future__ import annotations

import json

import pytest
import websockets

from tests.e2e.pusher_support import KEY, Client, pusher_app, sdk
from tests.e2e.support import wait_until


async def test_connection_established_and_ping(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    assert c.activity_timeout == 120
    assert c.socket_id.count(".") == 1 and c.socket_id.replace(".", "").isdigit()
    await c.send("pusher:ping")
    pong = await c.expect("pusher:pong")
    assert pong["data"] == {}
    await c.close()


async def test_unknown_key_gets_4001_and_close(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/app/nope")
    frame = json.loads(await ws.recv())
    assert frame == {
        "event": "pusher:error",
        "data": {"code": 4001, "message": "App key nope does not exist."},
    }
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 4001


async def test_disabled_app_and_quota(start_gateway):
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(),
                pusher_app(name="off", app_id="7", key="off", enabled=False),
                pusher_app(name="one", app_id="8", key="one", max_connections=1),
            ]
        }
    )
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/app/off")
    assert json.loads(await ws.recv())["data"]["code"] == 4003
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 4003
    first = await Client.connect(gw, "one")
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/app/one")
    assert json.loads(await ws.recv())["data"]["code"] == 4004
    with pytest.raises(websockets.ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 4004
    await first.send("pusher:ping")
    await first.expect("pusher:pong")  # the first connection keeps working


async def test_public_subscribe_and_api_event(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    ok = await c.subscribe("my-channel")
    assert ok == {"event": "pusher_internal:subscription_succeeded", "channel": "my-channel"}
    assert await sdk(gw).trigger("my-channel", "my-event", {"message": "hi"}) == {}
    frame = await c.expect("my-event")
    assert frame["channel"] == "my-channel"
    assert json.loads(frame["data"]) == {"message": "hi"}
    await c.send("pusher:unsubscribe", {"channel": "my-channel"})
    await wait_until(lambda: not gw.node.channel_names("p"))
    await c.close()


async def test_private_channel_auth(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    bad = await c.subscribe("private-x", {"auth": f"{KEY}:" + "0" * 64})
    assert bad == {
        "event": "pusher:subscription_error",
        "channel": "private-x",
        "data": {"type": "AuthError", "error": "The connection is unauthorized.", "status": 401},
    }
    auth = sdk(gw).authenticate(channel="private-x", socket_id=c.socket_id)
    ok = await c.subscribe("private-x", auth)
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    # Signed for another socket: refused.
    other = await Client.connect(gw)
    assert (await other.subscribe("private-x", auth))["event"] == "pusher:subscription_error"


async def test_presence_members(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    a, b, a2 = await Client.connect(gw), await Client.connect(gw), await Client.connect(gw)
    auth_a = p.authenticate(
        "presence-room", a.socket_id, {"user_id": "1", "user_info": {"name": "A"}}
    )
    ok = await a.subscribe("presence-room", auth_a)
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    assert json.loads(ok["data"]) == {
        "presence": {"ids": ["1"], "hash": {"1": {"name": "A"}}, "count": 1}
    }
    # A numeric user id stays a number in ids.
    auth_b = p.authenticate(
        "presence-room", b.socket_id, {"user_id": 2, "user_info": {"name": "B"}}
    )
    ok = await b.subscribe("presence-room", auth_b)
    assert json.loads(ok["data"])["presence"] == {
        "ids": ["1", 2],
        "hash": {"1": {"name": "A"}, "2": {"name": "B"}},
        "count": 2,
    }
    added = await a.expect("pusher_internal:member_added")
    assert json.loads(added["data"]) == {"user_id": 2, "user_info": {"name": "B"}}
    # A second tab of user 1: nobody is told.
    auth_a2 = p.authenticate(
        "presence-room", a2.socket_id, {"user_id": "1", "user_info": {"name": "A"}}
    )
    ok = await a2.subscribe("presence-room", auth_a2)
    assert json.loads(ok["data"])["presence"]["count"] == 2
    assert await p.users_info("presence-room") == {"users": [{"id": "1"}, {"id": "2"}]}
    info = await p.channel_info("presence-room", ["user_count", "subscription_count"])
    assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}
    await a2.close()  # user 1 still has a socket: no member_removed
    await b.close()
    removed = await a.expect("pusher_internal:member_removed")
    assert json.loads(removed["data"]) == {"user_id": 2}
    assert await p.users_info("presence-room") == {"users": [{"id": "1"}]}


async def test_presence_limits(start_gateway):
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(max_presence_members_per_channel=1, max_presence_member_size_in_kb=0.1)
            ]
        }
    )
    p = sdk(gw)
    a, b, c = await Client.connect(gw), await Client.connect(gw), await Client.connect(gw)
    await a.subscribe("presence-x", p.authenticate("presence-x", a.socket_id, {"user_id": "1"}))
    full = await b.subscribe(
        "presence-x", p.authenticate("presence-x", b.socket_id, {"user_id": "2"})
    )
    assert full["event"] == "pusher:subscription_error"
    assert full["data"]["status"] == 4100 and full["data"]["type"] == "LimitReached"
    # The same user in another tab is not a new member.
    same = await b.subscribe(
        "presence-x", p.authenticate("presence-x", b.socket_id, {"user_id": "1"})
    )
    assert same["event"] == "pusher_internal:subscription_succeeded"
    big = await c.subscribe(
        "presence-y",
        p.authenticate("presence-y", c.socket_id, {"user_id": "3", "user_info": {"x": "y" * 200}}),
    )
    assert big["data"]["status"] == 4301


async def test_bad_channel_names_and_malformed_frames(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(max_channel_name_length=10)]})
    c = await Client.connect(gw)
    long = await c.subscribe("a" * 11)
    assert long["data"]["status"] == 4009
    bad = await c.subscribe("bad channel!")
    assert bad["data"]["status"] == 4009
    await c.ws.send("not json")
    err = await c.expect("pusher:error")
    assert err["data"]["code"] is None
    await c.send("pusher:ping")
    await c.expect("pusher:pong")


async def test_activity_timeout_ping_then_4201(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(activity_timeout_s=1, pong_timeout_s=1)]})
    c = await Client.connect(gw)
    assert c.activity_timeout == 1
    await c.expect("pusher:ping", timeout=10)
    await c.send("pusher:pong")  # alive: no close
    await c.expect("pusher:ping", timeout=10)  # silent again: pinged again
    with pytest.raises(websockets.ConnectionClosed):
        await c.recv(timeout=10)
    assert c.ws.close_code == 4201


async def test_shutdown_sends_4200(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    await gw.stop(grace_s=2)
    err = await c.expect("pusher:error")
    assert err["data"]["code"] == 4200
    with pytest.raises(websockets.ConnectionClosed):
        await c.recv()
    assert c.ws.close_code == 4200


async def test_apps_are_isolated(start_gateway):
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(),
                pusher_app(name="other", app_id="456", key="other-key", secret="other-secret"),
            ]
        }
    )
    mine, theirs = await Client.connect(gw), await Client.connect(gw, "other-key")
    await mine.subscribe("news")
    await theirs.subscribe("news")
    await sdk(gw, app_id="456", key="other-key", secret="other-secret").trigger(
        "news", "for-other", "x"
    )
    assert (await theirs.recv())["event"] == "for-other"
    # Signed with the other app's secret: refused on this app.
    other_auth = sdk(gw, app_id="456", key="other-key", secret="other-secret").authenticate(
        "private-a", mine.socket_id
    )
    assert (await mine.subscribe("private-a", other_auth))["event"] == "pusher:subscription_error"
    await sdk(gw).trigger("news", "for-mine", "y")
    assert (await mine.recv())["event"] == "for-mine"  # nothing of the other app before it
    assert await sdk(gw).channels_info() == {"channels": {"news": {}}}


async def test_oversize_frame_closes_1009(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(max_message_bytes=1024)]})
    c = await Client.connect(gw)
    await c.ws.send(json.dumps({"event": "client-x", "channel": "private-a", "data": "x" * 2000}))
    with pytest.raises(websockets.ConnectionClosed):
        await c.recv()
    assert c.ws.close_code == 1009
    other = await Client.connect(gw)  # the server keeps working
    await other.send("pusher:ping")
    await other.expect("pusher:pong")


@pytest.mark.parametrize("user_id", [{"id": 1}, ["1"], True, 1.5])
async def test_presence_user_id_must_be_a_string_or_integer(start_gateway, user_id):
    # Issue 13 item 12: an object user_id was accepted and showed up as a Python repr.
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    c = await Client.connect(gw)
    auth = p.authenticate("presence-r", c.socket_id, {"user_id": user_id})
    refused = await c.subscribe("presence-r", auth)
    assert refused["event"] == "pusher:subscription_error", refused
    assert refused["data"]["status"] == 4302
    assert await p.users_info("presence-r") == {"users": []}
    ok = await c.subscribe(
        "presence-r", p.authenticate("presence-r", c.socket_id, {"user_id": "7"})
    )
    assert json.loads(ok["data"])["presence"]["ids"] == ["7"]
