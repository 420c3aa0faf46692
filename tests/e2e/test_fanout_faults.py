"""A fan-out never stops at a member that is gone (issue 13 items 1 and 11).

Run on uvloop, as ``sockway serve`` runs: there a write to a transport whose peer reset it
raises ``RuntimeError`` until the connection's end is processed, which once aborted the fan-out
loop at that member (the remaining members got nothing, the webhooks after it were never
queued).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import websockets
from aiohttp import web

from tests.conftest import StartGateway
from tests.e2e.pusher_support import Client, pusher_app, sdk
from tests.e2e.rawws import RawClient
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until

pytestmark = pytest.mark.uvloop

FAST = {"initial_backoff_s": 0.05, "max_backoff_s": 0.2, "retry_window_s": 5, "timeout_s": 2}


class Hooks:
    """A webhook receiver on an ephemeral port (every event it got, in order)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.events.extend(json.loads(await request.read())["events"])
        return web.Response()

    async def start(self) -> Hooks:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    def names(self, channel: str) -> Counter[str]:
        return Counter(e["name"] for e in self.events if e.get("channel") == channel)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def hooks() -> Any:
    h = await Hooks().start()
    yield h
    await h.stop()


def reset(ws: websockets.ClientConnection) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed client does."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


async def test_presence_members_resetting_at_once_are_all_announced(
    hooks: Hooks, start_gateway: StartGateway
) -> None:
    types = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]
    app = pusher_app(webhooks=[{"url": hooks.url, "event_types": types}], webhook_delivery=FAST)
    gw = await start_gateway({"apis": [app]})
    p = sdk(gw)
    channel = "presence-crowd"
    survivor = await Client.connect(gw)
    await survivor.subscribe(
        channel, p.authenticate(channel, survivor.socket_id, {"user_id": "survivor"})
    )
    doomed: list[Client] = []
    for i in range(60):
        c = await Client.connect(gw)
        frame = await c.subscribe(channel, p.authenticate(channel, c.socket_id, {"user_id": i}))
        assert frame["event"] == "pusher_internal:subscription_succeeded", frame
        doomed.append(c)
    for _ in doomed:
        assert (await survivor.expect("pusher_internal:member_added"))["channel"] == channel
    for c in doomed:  # all at once, in one go of the loop
        reset(c.ws)
    removed = []
    for _ in doomed:
        frame = await survivor.expect("pusher_internal:member_removed", timeout=10)
        removed.append(json.loads(frame["data"])["user_id"])
    assert sorted(removed) == list(range(60))  # each once (ids as given: numbers)
    await wait_until(lambda: hooks.names(channel)["member_removed"] == 60, timeout=10)
    await survivor.close()
    await wait_until(lambda: hooks.names(channel)["channel_vacated"] == 1, timeout=10)
    assert hooks.names(channel) == {
        "channel_occupied": 1,
        "member_added": 61,
        "member_removed": 61,
        "channel_vacated": 1,
    }


async def test_pusher_trigger_reaches_healthy_subscribers_while_others_drop(
    start_gateway: StartGateway,
) -> None:
    """HTTP triggers while subscribers reset and slow consumers are cut off: every trigger
    answers 200 and reaches every healthy subscriber once."""
    gw = await start_gateway({"apis": [pusher_app(outbox_max_bytes=16 * 1024)]})
    p = sdk(gw)
    healthy = [await Client.connect(gw) for _ in range(3)]
    for c in healthy:
        await c.subscribe("feed")
    doomed = [await Client.connect(gw) for _ in range(40)]
    for c in doomed:
        # more channels to leave: a reset socket's end takes longer to run
        for channel in ("feed", *(f"side-{i}" for i in range(6))):
            await c.subscribe(channel)
    stalled = []  # never read: each becomes a slow consumer
    subscribe = json.dumps({"event": "pusher:subscribe", "data": {"channel": "feed"}}).encode()
    for _ in range(3):
        raw = await RawClient.connect(gw.port, "/app/app-key?protocol=7", read_limit=4096)
        raw.send_frame(0x1, subscribe)
        stalled.append(raw)
    await wait_until(lambda: gw.metrics.connections.labels("p")._value.get() == 46)
    pad = "x" * 9000
    sent = 0
    got: list[list[int]] = [[] for _ in healthy]
    for round_ in range(200):
        for c in doomed[round_ * 4 : round_ * 4 + 4]:
            reset(c.ws)
        # three at once, so some arrive while the resets are being cleaned up
        await asyncio.gather(
            *(p.trigger("feed", "tick", {"n": sent + i, "pad": pad}) for i in range(3))
        )  # the SDK raises unless the answer is 200
        sent += 3
        for c, seen in zip(healthy, got, strict=True):
            for _ in range(3):
                seen.append(json.loads((await c.expect("tick"))["data"])["n"])
        if round_ >= 10 and gw.metrics.slow_consumers.labels("p")._value.get() == 3:
            break
    for seen in got:
        assert sorted(seen) == list(range(sent))  # each exactly once
    assert gw.metrics.slow_consumers.labels("p")._value.get() == 3
    for raw in stalled:
        raw.close()


async def test_channel_broadcast_skips_reset_members_and_counts_slow_ones_once(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``@channels`` POST while members reset and one stalls: 200 every time, every healthy
    member gets every message; the slow consumer leaves the channel at once, counted and
    logged once (item 11)."""
    gw = await start_gateway(
        {"apis": [api(handlers_dir(tmp_path), limits={"outbox_max_bytes": 32 * 1024})]}
    )
    base = f"http://127.0.0.1:{gw.port}/dev"
    url = f"ws://127.0.0.1:{gw.port}/dev"

    def last_id() -> str:
        return str(of_type(recorded(), "CONNECT")[-1]["requestContext"]["connectionId"])

    async with aiohttp.ClientSession() as http:

        async def join(conn_id: str) -> None:
            async with http.put(f"{base}/@connections/{quote(conn_id, safe='')}/channels/c") as r:
                assert r.status == 204

        healthy = []
        for _ in range(3):
            healthy.append(await websockets.connect(url, max_size=None))
            await join(last_id())
        doomed = []
        for _ in range(30):
            doomed.append(await websockets.connect(url))
            await join(last_id())
        stalled = await RawClient.connect(gw.port, "/dev", read_limit=4096)
        stalled_id = last_id()
        await join(stalled_id)
        caplog.set_level(logging.INFO)
        body = b"y" * 50_000
        dropped = 0
        after = 0  # broadcasts after the drop
        for round_ in range(400):
            for ws in doomed[round_ * 3 : round_ * 3 + 3]:
                reset(ws)
            async with http.post(f"{base}/@channels/c", data=body) as r:
                assert r.status == 200, await r.text()
                dropped += (await r.json())["disconnectedSlowConsumers"]
            for ws in healthy:
                assert await asyncio.wait_for(ws.recv(), 5) == body.decode()
            if dropped:
                # the slow consumer left the channel at once
                async with http.get(f"{base}/@channels/c") as r:
                    assert stalled_id not in (await r.json())["connectionIds"]
                after += 1
                if after == 20 and round_ >= 10:
                    break
        for ws in healthy:
            await ws.close()
    assert dropped == 1
    assert gw.metrics.slow_consumers.labels("t")._value.get() == 1
    slow_lines = [r for r in caplog.records if "slow consumer" in r.getMessage().lower()]
    assert len(slow_lines) == 1, [r.getMessage() for r in slow_lines]
    stalled.close()


async def test_aiohttp_path_presence_members_resetting_at_once(start_gateway: StartGateway) -> None:
    """The same on the aiohttp transport (an upgrade that follows another request on its
    connection): 40 presence members reset at once, the survivor hears of every one."""
    gw = await start_gateway({"apis": [pusher_app()]})
    p = sdk(gw)
    channel = "presence-aio"

    async def member(user_id: Any) -> RawClient:
        raw = await RawClient.connect(gw.port, "/app/app-key?protocol=7", after="/health")
        _, hello = await asyncio.wait_for(raw.read_frame(), 5)
        socket_id = json.loads(json.loads(hello)["data"])["socket_id"]
        auth = p.authenticate(channel, socket_id, {"user_id": user_id})
        frame = {"event": "pusher:subscribe", "data": {"channel": channel, **auth}}
        raw.send_frame(0x1, json.dumps(frame).encode())
        while True:
            _, data = await asyncio.wait_for(raw.read_frame(), 5)
            if json.loads(data)["event"] == "pusher_internal:subscription_succeeded":
                return raw

    survivor = await member("survivor")
    doomed = [await member(i) for i in range(40)]
    added = 0
    while added < 40:
        _, data = await asyncio.wait_for(survivor.read_frame(), 5)
        added += json.loads(data)["event"] == "pusher_internal:member_added"
    for raw in doomed:
        sock = raw.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.writer.transport.abort()
    removed = []
    while len(removed) < 40:
        _, data = await asyncio.wait_for(survivor.read_frame(), 10)
        frame = json.loads(data)
        if frame["event"] == "pusher_internal:member_removed":
            removed.append(json.loads(frame["data"])["user_id"])
    assert sorted(removed) == list(range(40))
    survivor.close()
