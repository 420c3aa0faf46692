"""The real pusher-js client (npm, Node build) against sockway, with the real py SDK as the
app's back end: auth endpoint, triggers, queries, sign-in and termination (pusher spec §1-§3)."""

from __future__ import annotations

import asyncio
import base64

import pusher
import pytest

from tests.e2e.pusher_js import DRIVER, AuthServer, PusherJs
from tests.e2e.pusher_support import APP_ID, KEY, SECRET, pusher_app, sdk
from tests.e2e.support import wait_until

ECHO_DRIVER = DRIVER.with_name("echo_driver.mjs")
MASTER_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
USERS = {
    "anon": {"id": "0", "name": "Anon"},
    "ann": {"id": "1", "name": "Ann"},
    "bob": {"id": "2", "name": "Bob"},
}


@pytest.fixture
async def js_env(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(enable_client_messages=True)]})
    client = pusher.Pusher(
        app_id=APP_ID,
        key=KEY,
        secret=SECRET,
        host="127.0.0.1",
        port=gw.port,
        ssl=False,
        encryption_master_key_base64=MASTER_KEY,
    )
    auth = await AuthServer(client, USERS).start()
    js = await PusherJs.start(gw.port, KEY, auth.url)
    yield gw, auth, js
    await js.stop()
    await auth.stop()


async def _connect(js: PusherJs, auth: AuthServer, name: str) -> str:
    await js.send(cmd="connect", id=name)
    socket_id = (await js.wait_for(id=name, type="connected"))["socket_id"]
    auth.user_for_socket[socket_id] = name
    return socket_id


async def test_public_private_and_api_events(js_env):
    gw, auth, js = js_env
    p = sdk(gw)
    await _connect(js, auth, "ann")
    for channel in ("news", "private-room"):
        await js.send(cmd="subscribe", id="ann", channel=channel)
        await js.wait_for(id="ann", type="subscribed", channel=channel)
    await js.send(cmd="subscribe", id="ann", channel="private-forbidden")
    assert (await js.wait_for(id="ann", type="subscription_error"))["status"] == 403
    await p.trigger(["news", "private-room"], "headline", {"title": "hello"})
    for channel in ("news", "private-room"):
        got = await js.wait_for(id="ann", type="event", channel=channel)
        assert got["event"] == "headline" and got["data"] == {"title": "hello"}
    await p.trigger_batch([{"channel": "news", "name": "b", "data": '{"n": 2}'}])
    assert (await js.wait_for(id="ann", type="event", event="b"))["data"] == {"n": 2}
    assert await p.channels_info() == {"channels": {"news": {}, "private-room": {}}}


async def test_presence_and_client_events(js_env):
    gw, auth, js = js_env
    p = sdk(gw)
    await _connect(js, auth, "ann")
    await _connect(js, auth, "bob")
    await js.send(cmd="subscribe", id="ann", channel="presence-lobby", events=["client-wave"])
    joined = await js.wait_for(id="ann", type="subscribed", channel="presence-lobby")
    assert joined["count"] == 1 and joined["me"] == "1"
    await js.send(cmd="subscribe", id="bob", channel="presence-lobby")
    assert (await js.wait_for(id="bob", type="subscribed"))["count"] == 2
    added = await js.wait_for(id="ann", type="member_added")
    assert added["user_id"] == "2" and added["info"] == {"name": "Bob"}
    assert await p.users_info("presence-lobby") == {"users": [{"id": "1"}, {"id": "2"}]}
    await js.send(
        cmd="trigger", id="bob", channel="presence-lobby", event="client-wave", data={"from": "bob"}
    )
    assert (await js.wait_for(id="bob", type="triggered"))["ok"] is True
    wave = await js.wait_for(id="ann", type="bound_event", event="client-wave")
    assert wave["data"] == {"from": "bob"} and wave["user_id"] == "2"
    await js.send(cmd="disconnect", id="bob")
    assert (await js.wait_for(id="ann", type="member_removed"))["user_id"] == "2"


async def test_signin_send_to_user_and_terminate(js_env):
    gw, auth, js = js_env
    p = sdk(gw)
    await _connect(js, auth, "ann")
    await js.send(cmd="signin", id="ann")
    await js.wait_for(id="ann", type="signed_in")
    # pusher-js subscribes to #server-to-user-1 by itself after signin.
    await wait_until(lambda: "#server-to-user-1" in gw.node.channel_names("p"))
    await p.send_to_user("1", "private-note", {"text": "for ann"})
    note = await js.wait_for(id="ann", type="user_event", event="private-note")
    assert note["data"] == {"text": "for ann"}
    await p.terminate_user_connections("1")
    error = await js.wait_for(id="ann", type="error")
    assert error["error"]["code"] == 4009
    # 4009 is in pusher-js's "refused" range: it disconnects and does not reconnect.
    await js.wait_for(id="ann", type="state", current="disconnected")


async def test_encrypted_channel_end_to_end(js_env):
    """The SDK encrypts, sockway relays ciphertext, pusher-js decrypts with the shared secret
    its auth endpoint handed out (pusher spec §1.8)."""
    _gw, auth, js = js_env
    await _connect(js, auth, "ann")
    await js.send(cmd="subscribe", id="ann", channel="private-encrypted-vault")
    await js.wait_for(id="ann", type="subscribed", channel="private-encrypted-vault")
    await asyncio.to_thread(
        auth.client.trigger, "private-encrypted-vault", "secret", {"code": 1234}
    )
    got = await js.wait_for(id="ann", type="event", channel="private-encrypted-vault")
    assert got["event"] == "secret" and got["data"] == {"code": 1234}


async def test_laravel_echo(start_gateway):
    """Laravel Echo on pusher-js: public and private listeners, and ``.error()`` receiving
    sockway's channel-scoped ``pusher:subscription_error`` for a bad signature."""
    gw = await start_gateway({"apis": [pusher_app()]})
    client = pusher.Pusher(
        app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1", port=gw.port, ssl=False
    )
    auth = await AuthServer(client, USERS).start()
    echo = await PusherJs.start(gw.port, KEY, auth.url, ECHO_DRIVER)
    try:
        await echo.wait_for(type="subscribed", channel="orders")
        await echo.wait_for(type="subscribed", channel="private-room")
        error = await echo.wait_for(type="error", channel="private-badsig")
        assert error["error"] == {
            "type": "AuthError",
            "error": "The connection is unauthorized.",
            "status": 401,
        }
        await asyncio.to_thread(client.trigger, "orders", "OrderShipped", {"id": 7})
        assert (await echo.wait_for(type="event", channel="orders"))["data"] == {"id": 7}
        await asyncio.to_thread(client.trigger, "private-room", "Said", {"text": "hi"})
        assert (await echo.wait_for(type="event", channel="private-room"))["data"] == {"text": "hi"}
    finally:
        await echo.stop()
        await auth.stop()
