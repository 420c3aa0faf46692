"""soketi's users' expectations (issue 17): the cases its own test suite found, each driven with
the real clients (pusher-js from Node, the ``pusher`` Python SDK) against a real gateway."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp
import pusher
import pytest

from tests.e2e.pusher_js import AuthServer, PusherJs
from tests.e2e.pusher_support import APP_ID, KEY, SECRET, Client, pusher_app, sdk
from tests.e2e.support import wait_until
from tests.e2e.test_pusher_webhooks import Receiver

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
            "The event data should be less than 1.0 KB.",
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


# -- case 2: channel queries carry the counts soketi always sends (per-app setting) ------------


async def test_channel_counts_as_requested_or_always(start_gateway):
    gw = await start_gateway(
        {
            "apis": [
                pusher_app(),
                pusher_app(name="s", app_id="app-id", key="s", channel_info_counts="always"),
            ]
        }
    )
    for key in (KEY, "s"):
        c = await Client.connect(gw, key)
        await c.subscribe("news")
        await c.subscribe("presence-room", _presence_auth(gw, key, c.socket_id, 7))
    pusher_like = sdk(gw)
    soketi_like = _signed(gw, "app-id", "s")
    # Pusher's docs: only what info= asks for.
    assert await pusher_like.channels_info() == {"channels": {"news": {}, "presence-room": {}}}
    assert await pusher_like.channel_info("presence-room") == {"occupied": True}
    # soketi: subscription_count (and occupied) every time, user_count on presence channels.
    assert await soketi_like("GET", "/channels") == {
        "channels": {
            "news": {"subscription_count": 1, "occupied": True},
            "presence-room": {"subscription_count": 1, "occupied": True},
        }
    }
    assert await soketi_like("GET", "/channels/news") == {
        "occupied": True,
        "subscription_count": 1,
    }
    assert await soketi_like("GET", "/channels/presence-room") == {
        "occupied": True,
        "subscription_count": 1,
        "user_count": 1,
    }
    assert await soketi_like("GET", "/channels/empty") == {
        "occupied": False,
        "subscription_count": 0,
    }


def _presence_auth(gw, key: str, socket_id: str, user_id) -> dict:
    return pusher.Pusher(app_id="1", key=key, secret=SECRET).authenticate(
        "presence-room", socket_id, {"user_id": user_id}
    )


def _signed(gw, app_id: str, key: str):
    """Signed HTTP API calls for any app id (the Python SDK insists on digits, §3.2), signed
    as the Node SDK and soketi's own tests sign them."""

    async def call(method: str, tail: str, body: bytes = b"", status: int = 200) -> Any:
        path = f"/apps/{app_id}{tail}"
        params = {"auth_key": key, "auth_timestamp": str(int(time.time())), "auth_version": "1.0"}
        if body:
            params["body_md5"] = hashlib.md5(body).hexdigest()
        query = "&".join(f"{k}={params[k]}" for k in sorted(params))
        sign = f"{method}\n{path}\n{query}".encode()
        signature = hmac.new(SECRET.encode(), sign, hashlib.sha256).hexdigest()
        url = f"http://127.0.0.1:{gw.port}{path}?{query}&auth_signature={signature}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, data=body or None) as response,
        ):
            assert response.status == status, await response.text()
            return await response.json(content_type=None)

    return call


# -- cases 3, 4: presence webhooks keep user_id as given; client_event data per setting --------


async def test_webhook_user_ids_and_client_event_data(start_gateway):
    receiver = await Receiver().start()
    try:
        types = ["member_added", "member_removed", "client_event"]
        gw = await start_gateway(
            {
                "apis": [
                    pusher_app(
                        enable_client_messages=True,
                        webhooks=[{"url": receiver.url, "event_types": types}],
                    ),
                    pusher_app(
                        name="s",
                        app_id="2",
                        key="s",
                        enable_client_messages=True,
                        webhook_client_event_data="object",
                        webhooks=[{"url": receiver.url, "event_types": ["client_event"]}],
                    ),
                ]
            }
        )
        for key in (KEY, "s"):
            a, b = await Client.connect(gw, key), await Client.connect(gw, key)
            await a.subscribe("presence-room", _presence_auth(gw, key, a.socket_id, 2))
            await b.subscribe("presence-room", _presence_auth(gw, key, b.socket_id, "bob"))
            await b.send("client-hi", {"n": 1}, channel="presence-room")
            await a.expect("pusher_internal:member_added")
            await a.expect("client-hi")
            await a.close()

        # Every request as sent (app "s" is signed with its own key, which the receiver's
        # validator, made for app-key, refuses: its request is then retried, and deduplicated).
        def sent() -> list[dict[str, Any]]:
            bodies = dict.fromkeys(raw for _, raw in receiver.requests)
            return [e for raw in bodies for e in json.loads(raw)["events"]]

        await wait_until(lambda: len(sent()) >= 5)
        events = sent()
        assert {"name": "member_added", "channel": "presence-room", "user_id": 2} in events
        assert {"name": "member_removed", "channel": "presence-room", "user_id": 2} in events
        client_events = [e for e in events if e["name"] == "client_event"]
        assert [(e["data"], e["user_id"]) for e in client_events] == [
            ('{"n":1}', "bob"),  # Pusher: a JSON string
            ({"n": 1}, "bob"),  # soketi: the object
        ]
    finally:
        await receiver.stop()


# -- case 5: GET / and unknown paths -----------------------------------------------------------


async def test_root_answers_ok_and_unknown_paths_404(start_gateway):
    gw = await start_gateway({"apis": [pusher_app()]})
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{gw.port}/") as response:
            assert (response.status, await response.text()) == (200, "OK")
            assert response.headers["Access-Control-Allow-Origin"] == "*"
        async with session.get(f"http://127.0.0.1:{gw.port}/nothing/here") as response:
            assert response.status == 404
            assert response.headers["Access-Control-Allow-Origin"] == "*"


# -- case 6: the HTTP API's request-size limit -------------------------------------------------


async def test_http_request_limit(start_gateway):
    gw = await start_gateway({"apis": [pusher_app(max_http_request_mb=0.01)]})
    call = _signed(gw, APP_ID, KEY)
    small = json.dumps({"name": "e", "channel": "c", "data": "x" * 100}).encode()
    assert await call("POST", "/events", small) == {}
    big = json.dumps({"batch": [{"name": "e", "channel": "c", "data": "x" * 9000}] * 2}).encode()
    answer = await call("POST", "/batch_events", big, status=413)
    assert answer == {"error": "The payload size is too big.", "code": 413}


# -- case 7: a soketi app id; webhook headers naming X-Pusher-* --------------------------------


async def test_string_app_id_and_ignored_pusher_headers(start_gateway):
    receiver = await Receiver().start()
    try:
        hook = {
            "url": receiver.url,
            "event_types": ["channel_occupied"],
            "headers": {"X-Pusher-Key": "nope", "X-Pusher-Signature": "nope", "X-Extra": "1"},
        }
        gw = await start_gateway({"apis": [pusher_app(app_id="app-id", webhooks=[hook])]})
        c = await Client.connect(gw)
        await c.subscribe("news")
        assert await _signed(gw, "app-id", KEY)("GET", "/channels") == {"channels": {"news": {}}}
        await wait_until(lambda: len(receiver.bodies) == 1)  # validated by the SDK
        headers, _ = receiver.requests[0]
        assert headers["X-Pusher-Key"] == KEY and headers["X-Extra"] == "1"
    finally:
        await receiver.stop()


async def test_presence_webhooks_keep_a_numeric_user_id(start_gateway):
    """Case 3 alone, on an app without any new setting."""
    receiver = await Receiver().start()
    try:
        types = ["member_added", "member_removed"]
        hooks = [{"url": receiver.url, "event_types": types}]
        gw = await start_gateway({"apis": [pusher_app(webhooks=hooks)]})
        a = await Client.connect(gw)
        await a.subscribe("presence-room", _presence_auth(gw, KEY, a.socket_id, 2))
        await a.close()
        await wait_until(lambda: len(receiver.events()) == 2)
        assert receiver.events() == [
            {"name": "member_added", "channel": "presence-room", "user_id": 2},
            {"name": "member_removed", "channel": "presence-room", "user_id": 2},
        ]
    finally:
        await receiver.stop()


# -- soketi's per-app usage counts, as Prometheus metrics --------------------------------------


async def test_per_app_usage_metrics(start_gateway):
    from prometheus_client.parser import text_string_to_metric_families

    gw = await start_gateway({"apis": [pusher_app()]})
    c = await Client.connect(gw)
    await c.subscribe("news")
    await sdk(gw).trigger("news", "ev", {"x": 1})
    await c.expect("ev")
    await c.close()
    app = gw.front_doors[0].app  # type: ignore[attr-defined]
    await wait_until(lambda: not app.sockets)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gw.port}/metrics") as response,
    ):
        text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"api": "p", "app_id": APP_ID, **labels}.items())))]

    assert value("sockway_pusher_disconnections_total") == 1
    subscribe = len(json.dumps({"event": "pusher:subscribe", "data": {"channel": "news"}}))
    assert value("sockway_pusher_ws_bytes_total", direction="received") == subscribe
    # connection_established + subscription_succeeded + the event
    assert value("sockway_pusher_ws_bytes_total", direction="sent") > 150
    assert value("sockway_pusher_http_calls_total", status="200") == 1
    assert value("sockway_pusher_http_bytes_total", direction="received") > 40
    assert value("sockway_pusher_http_bytes_total", direction="sent") == 2  # {}
