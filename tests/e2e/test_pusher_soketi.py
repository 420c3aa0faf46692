"""soketi's users' expectations (issue 17): the cases its own test suite found, each driven with
the real clients (pusher-js from Node, the ``pusher`` Python SDK) against a real gateway."""

from __future__ import annotations

import pusher
import pytest

from tests.e2e.pusher_js import AuthServer, PusherJs
from tests.e2e.pusher_support import APP_ID, KEY, SECRET, pusher_app

USERS = {"anon": {"id": "0", "name": "Anon"}, "ann": {"id": "1", "name": "Ann"}}


async def _js(gw, key: str = KEY, app_id: str = APP_ID) -> tuple[AuthServer, PusherJs]:
    client = pusher.Pusher(
        app_id=APP_ID, key=key, secret=SECRET, host="127.0.0.1", port=gw.port, ssl=False
    )
    auth = await AuthServer(client, USERS).start()
    return auth, await PusherJs.start(gw.port, key, auth.url)


@pytest.fixture
async def js_pair(start_gateway):
    started: list[tuple[AuthServer, PusherJs]] = []

    async def start(**app):
        gw = await start_gateway({"apis": [pusher_app(**app)]})
        auth, js = await _js(gw)
        started.append((auth, js))
        return gw, auth, js

    yield start
    for auth, js in started:
        await js.stop()
        await auth.stop()


async def _connect(js: PusherJs, auth: AuthServer, name: str) -> str:
    await js.send(cmd="connect", id=name)
    socket_id = (await js.wait_for(id=name, type="connected"))["socket_id"]
    auth.user_for_socket[socket_id] = name
    return socket_id


# -- case 1: a refused client event reaches the channel's error handler -------------------------


@pytest.mark.parametrize(
    ("app", "data", "message"),
    [
        ({}, {"x": 1}, "The app does not have client messaging enabled."),
        (
            {"enable_client_messages": True, "max_event_payload_in_kb": 1},
            {"x": "y" * 2000},
            "The event data should be less than 1 KB.",
        ),
    ],
)
async def test_refused_client_event_is_channel_scoped(js_pair, app, data, message):
    _gw, auth, js = await js_pair(**app)
    await _connect(js, auth, "ann")
    await js.send(cmd="subscribe", id="ann", channel="private-room")
    await js.wait_for(id="ann", type="subscribed", channel="private-room")
    await js.send(cmd="trigger", id="ann", channel="private-room", event="client-x", data=data)
    got = await js.wait_for(id="ann", type="channel_error")
    assert got == {
        "id": "ann",
        "type": "channel_error",
        "channel": "private-room",
        "code": 4301,
        "message": message,
    }
