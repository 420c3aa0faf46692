"""``sockway serve --soketi-config`` with an unchanged soketi configuration file (issue 17),
driven by the real clients: pusher-js (Node) and signed HTTP API calls as soketi's SDK users
make them; webhooks batched as soketi batches them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pusher

from tests.e2e.pusher_js import AuthServer, PusherJs
from tests.e2e.pusher_support import Client, pusher_app
from tests.e2e.support import wait_until
from tests.e2e.test_pusher_soketi import _signed
from tests.e2e.test_pusher_webhooks import Receiver

FIXTURE = Path(__file__).with_name("fixtures") / "soketi.json"
ROOT = Path(__file__).resolve().parents[2]


class _Port:
    def __init__(self, port: int) -> None:
        self.port = port


async def test_soketi_config_file_unchanged(tmp_path):
    receiver = await Receiver().start()
    hooks = json.loads(FIXTURE.read_text())["appManager.array.apps"][0]["webhooks"]
    hooks[0]["url"] = receiver.url  # the test's receiver instead of the file's host
    env = {
        **os.environ,
        # soketi's own variables, as a deployment sets them next to the file
        "SOKETI_PORT": "0",
        "SOKETI_HOST": "127.0.0.1",
        "SOKETI_DEFAULT_APP_WEBHOOKS": json.dumps(hooks),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sockway",
        "serve",
        "--soketi-config",
        str(FIXTURE),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    auth = js = None
    try:
        assert proc.stdout is not None
        port = None
        while port is None:
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line, "sockway exited before listening"
            found = re.search(r"ws://127\.0\.0\.1:(\d+)/app/app-key", line)
            port = int(found.group(1)) if found else None
        gw = _Port(port)
        signer = pusher.Pusher(app_id="1", key="app-key", secret="app-secret")
        auth = await AuthServer(signer, {"anon": {"id": "0", "name": "A"}}).start()
        js = await PusherJs.start(port, "app-key", auth.url)
        await js.send(cmd="connect", id="a")
        await js.wait_for(id="a", type="connected")
        await js.send(cmd="connect", id="b")
        await js.wait_for(id="b", type="connected")
        for who in ("a", "b"):
            await js.send(cmd="subscribe", id=who, channel="private-room", events=["client-hi"])
            await js.wait_for(id=who, type="subscribed", channel="private-room")
        # client events are enabled by the file, and unlimited (maxClientEventsPerSecond -1)
        for n in range(15):
            await js.send(
                cmd="trigger", id="a", channel="private-room", event="client-hi", data={"n": n}
            )
        for n in range(15):
            got = await js.wait_for(id="b", type="bound_event", event="client-hi")
            assert got["data"] == {"n": n}
        # the HTTP API of the string app id, with soketi's channel counts
        call = _signed(gw, "app-id", "app-key")
        event = json.dumps({"name": "news", "channel": "private-room", "data": '{"t":1}'})
        assert await call("POST", "/events", event.encode()) == {}
        got = await js.wait_for(id="a", type="event", event="news")
        assert got["data"] == {"t": 1}
        assert await call("GET", "/channels/private-room") == {
            "occupied": True,
            "subscription_count": 2,
        }
        # httpApi.requestLimitInMb: 1
        big = json.dumps({"name": "n", "channel": "c", "data": "x" * (1024 * 1024)}).encode()
        assert (await call("POST", "/events", big, status=413))["code"] == 413
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/") as r:
            assert (r.status, await r.text()) == (200, "OK")
        # webhooks: batched (200 ms window), client_event data as the object, filter kept
        await wait_until(lambda: len(receiver.events()) >= 16, 10)
        names = [e["name"] for e in receiver.events()]
        assert names == ["channel_occupied"] + ["client_event"] * 15
        assert receiver.events()[1]["data"] == {"n": 0}
        assert len(receiver.bodies) < 16  # batched into fewer requests
        headers, _ = receiver.requests[0]
        assert headers["X-Forwarded-By"] == "soketi"
    finally:
        if js is not None:
            await js.stop()
        if auth is not None:
            await auth.stop()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        await receiver.stop()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    assert "soketi config: metrics: not used" in text


async def test_webhook_batching_puts_a_window_of_events_in_one_request(start_gateway):
    receiver = await Receiver().start()
    try:
        hook = {"url": receiver.url, "event_types": ["channel_occupied", "channel_vacated"]}
        gw = await start_gateway(
            {"apis": [pusher_app(webhooks=[hook], webhook_delivery={"batch_window_ms": 300})]}
        )
        c = await Client.connect(gw)
        for channel in ("one", "two", "three"):
            await c.subscribe(channel)
        await c.send("pusher:unsubscribe", {"channel": "two"})
        await wait_until(lambda: len(receiver.events()) == 4)
        assert len(receiver.bodies) == 1  # one window, every channel
        assert [(e["name"], e["channel"]) for e in receiver.events()] == [
            ("channel_occupied", "one"),
            ("channel_occupied", "two"),
            ("channel_occupied", "three"),
            ("channel_vacated", "two"),
        ]
    finally:
        await receiver.stop()
