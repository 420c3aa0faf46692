"""Client events, signin and user-authentication deadlines (pusher spec §1.6, §1.7, §1.8)."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import orjson
import pusher
import pytest
import websockets

from sockway.pusher.signatures import hmac_hex
from tests.e2e.pusher_support import KEY, Client, pusher_app, sdk


async def _private(gw, channel, *clients):
    for c in clients:
        ok = await c.subscribe(channel, sdk(gw).authenticate(channel, c.socket_id))
        assert ok["event"] == "pusher_internal:subscription_succeeded"


async def test_client_events_between_members(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(enable_client_messages=True)]})
    a, b = await Client.connect(gw), await Client.connect(gw)
    await _private(gw, "private-chat", a, b)
    await a.send("client-typing", {"who": "a"}, channel="private-chat")
    got = await b.expect("client-typing")
    assert got == {"event": "client-typing", "channel": "private-chat", "data": {"who": "a"}}
    await a.send("pusher:ping")
    assert (await a.recv())["event"] == "pusher:pong"  # the sender got nothing back


async def test_client_events_on_presence_carry_user_id(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(enable_client_messages=True)]})
    p = sdk(gw)
    a, b = await Client.connect(gw), await Client.connect(gw)
    await a.subscribe("presence-p", p.authenticate("presence-p", a.socket_id, {"user_id": "ann"}))
    await b.subscribe("presence-p", p.authenticate("presence-p", b.socket_id, {"user_id": "bob"}))
    await a.expect("pusher_internal:member_added")
    await b.send("client-hi", {"x": 1}, channel="presence-p")
    got = await a.expect("client-hi")
    assert got["user_id"] == "bob" and got["data"] == {"x": 1}


async def test_client_event_rejections_keep_the_socket(start_gateway):
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(),
                pusher_app(
                    name="on",
                    app_id="2",
                    key="on",
                    enable_client_messages=True,
                    max_client_events_per_sec=2,
                    max_event_payload_in_kb=1,
                ),
            ]
        }
    )
    off = await Client.connect(gw)
    await _private(gw, "private-x", off)
    await off.send("client-x", {}, channel="private-x")
    err = await off.expect("pusher:error")
    assert err["data"] == {
        "code": 4301,
        "message": "The app does not have client messaging enabled.",
    }

    p = sdk(gw, app_id="2", key="on")
    c = await Client.connect(gw, "on")
    await c.subscribe("public")
    await c.send("client-x", {}, channel="public")
    assert (await c.expect("pusher:error"))["data"]["code"] == 4301
    enc = pusher.Pusher(
        app_id="2",
        key="on",
        secret="app-secret",
        encryption_master_key_base64=base64.b64encode(b"k" * 32).decode(),
    )
    auth = enc.authenticate("private-encrypted-x", c.socket_id)
    await c.subscribe("private-encrypted-x", {"auth": auth["auth"]})
    await c.send("client-x", {}, channel="private-encrypted-x")
    assert "private or presence" in (await c.expect("pusher:error"))["data"]["message"]
    await c.send("client-x", {}, channel="private-not-subscribed")
    assert (await c.expect("pusher:error"))["data"]["code"] == 4301
    await c.subscribe("private-y", p.authenticate("private-y", c.socket_id))
    await c.send("client-x", {"big": "x" * 2000}, channel="private-y")
    assert "less than" in (await c.expect("pusher:error"))["data"]["message"]
    for _ in range(3):
        await c.send("client-x", {}, channel="private-y")
    err = await c.expect("pusher:error")
    assert err["data"]["message"] == "The rate limit for sending client events exceeded the quota."
    await c.send("pusher:ping")
    await c.expect("pusher:pong")


async def test_encrypted_channel_relays_ciphertext(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    master = base64.b64encode(os.urandom(32)).decode()
    p = pusher.Pusher(
        app_id="123",
        key=KEY,
        secret="app-secret",
        host="127.0.0.1",
        port=gw.port,
        ssl=False,
        encryption_master_key_base64=master,
    )
    c = await Client.connect(gw)
    auth = p.authenticate("private-encrypted-s", c.socket_id)
    assert "shared_secret" in auth
    ok = await c.subscribe("private-encrypted-s", {"auth": auth["auth"]})
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    await asyncio.to_thread(p.trigger, "private-encrypted-s", "secret", {"m": 1})
    frame = await c.expect("secret")
    assert set(json.loads(frame["data"])) == {"nonce", "ciphertext"}


async def test_signin_failures_close_4009(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    c = await Client.connect(gw)
    auth = p.authenticate_user("1.1", {"id": "1"})  # signed for another socket
    await c.send("pusher:signin", auth)
    assert (await c.expect("pusher:error"))["data"] == {
        "code": 4009,
        "message": "Connection not authorized.",
    }
    with pytest.raises(websockets.ConnectionClosed):
        await c.recv()
    assert c.ws.close_code == 4009


async def test_user_authentication_timeout(start_gateway):
    gw = await start_gateway(
        {"apis": [pusher_app(enable_user_authentication=True, user_authentication_timeout_s=1)]}
    )
    p = sdk(gw)
    signed = await Client.connect(gw)
    await signed.send("pusher:signin", p.authenticate_user(signed.socket_id, {"id": "1"}))
    await signed.expect("pusher:signin_success")
    lazy = await Client.connect(gw)
    err = await lazy.expect("pusher:error", timeout=10)
    assert err["data"] == {"code": 4009, "message": "Connection not authorized within timeout."}
    with pytest.raises(websockets.ConnectionClosed):
        await lazy.recv()
    await signed.send("pusher:ping")
    await signed.expect("pusher:pong")


async def test_server_to_user_channel_needs_signin_as_that_user(start_gateway):
    # Issue 13 item 5: #server-to-user-{id} is reserved for the socket signed in as {id}
    # (pusher spec §1.7); anyone else is refused with a channel-scoped subscription_error.
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    snoop = await Client.connect(gw)
    refused = await snoop.subscribe("#server-to-user-1")
    assert refused["event"] == "pusher:subscription_error"
    assert refused["channel"] == "#server-to-user-1"
    assert refused["data"]["type"] == "AuthError" and refused["data"]["status"] == 4009
    other = await Client.connect(gw)
    await other.send("pusher:signin", p.authenticate_user(other.socket_id, {"id": "2"}))
    await other.expect("pusher:signin_success")
    assert (await other.subscribe("#server-to-user-1"))["event"] == "pusher:subscription_error"
    own = await other.subscribe("#server-to-user-2")
    assert own["event"] == "pusher_internal:subscription_succeeded"
    user = await Client.connect(gw)
    await user.send("pusher:signin", p.authenticate_user(user.socket_id, {"id": "1"}))
    await user.expect("pusher:signin_success")
    ok = await user.subscribe("#server-to-user-1")
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    await p.send_to_user("1", "secret", {"for": "1"})
    assert json.loads((await user.expect("secret"))["data"]) == {"for": "1"}
    # Neither the unsigned socket nor user 2 got user 1's message; both still work.
    for c in (snoop, other):
        await c.send("pusher:ping")
        assert (await c.recv())["event"] == "pusher:pong"


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


async def test_deeply_nested_client_data_is_refused_not_a_server_error(start_gateway, caplog):
    # Issue 13 item 8 (other front doors): orjson reads 1,024 levels but writes only 254, so
    # echoing a client's deep data raised TypeError ("A server error has occured", traceback).
    # Such data is the client's fault: client events get 4301, presence user_info 4302.
    gw = await start_gateway({"apis": [pusher_app(enable_client_messages=True)]})
    p = sdk(gw)
    a, b = await Client.connect(gw), await Client.connect(gw)
    for c in (a, b):
        ok = await c.subscribe("private-d", p.authenticate("private-d", c.socket_id))
        assert ok["event"] == "pusher_internal:subscription_succeeded"
    for depth in (251, 300, 1000):
        await a.ws.send(f'{{"event":"client-x","channel":"private-d","data":{_nested(depth)}}}')
        err = await a.expect("pusher:error")
        assert err["data"] == {"code": 4301, "message": "The event data is nested too deeply."}
        info = orjson.loads(_nested(depth))
        channel_data = (
            orjson.dumps({"user_id": "1", "user_info": info})
            if depth < 254
            else (b'{"user_id":"1","user_info":' + _nested(depth).encode() + b"}")
        )
        auth = {
            "auth": f"{KEY}:"
            + hmac_hex("app-secret", f"{a.socket_id}:presence-d:{channel_data.decode()}"),
            "channel_data": channel_data.decode(),
        }
        refused = await a.subscribe("presence-d", auth)
        assert refused["event"] == "pusher:subscription_error"
        assert refused["data"]["status"] == 4302
    await a.ws.send(f'{{"event":"client-x","channel":"private-d","data":{_nested(1500)}}}')
    assert (await a.expect("pusher:error"))["data"]["message"] == "The message is not valid JSON."
    # 250 levels are still relayed, and a presence member that deep still joins.
    await a.ws.send(f'{{"event":"client-x","channel":"private-d","data":{_nested(250)}}}')
    relayed = await b.expect("client-x")
    assert relayed["data"] == json.loads(_nested(250))
    info = json.loads(_nested(200))
    auth = p.authenticate("presence-d", a.socket_id, {"user_id": "1", "user_info": info})
    assert (await a.subscribe("presence-d", auth))["event"] == (
        "pusher_internal:subscription_succeeded"
    )
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
