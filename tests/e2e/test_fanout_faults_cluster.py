"""Cross-node delivery past members whose transport already closed (issue 13 item 1).

Two real ``sockway serve`` nodes on a real Redis (a key prefix of their own). The subscribers
are on node B, many of them resetting; every publication goes through node A's HTTP API
(Pusher trigger, websocket ``@channels`` POST, AppSync Events ``POST /event``), so B delivers
it from the broker (``pusher/cluster.py`` ``_deliver``, ``frontdoor/cluster.py``,
``events/cluster.py``).

To meet closed transports for sure, B is stalled (SIGSTOP, as a node starved of CPU is) while
a batch of its subscribers reset and A publishes, then resumed: B reads the resets and the
publication in one poll, resets first, so the delivery runs after those transports closed and
before (aiohttp path, Pusher on both paths) their connections' ends were processed. Every
surviving subscriber on B gets every message, A answers 200 every time, and B logs no error
and no traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from tests.e2e.appsync_support import API_KEY, EventsClient
from tests.e2e.owned_socket import OwnedEvents, OwnedWs
from tests.e2e.pusher_support import KEY, Client, sdk
from tests.e2e.redis_cluster import Node, cluster_config, start_nodes
from tests.redis_support import redis_url

pytestmark = pytest.mark.timeout(180)

ROUNDS = 10
PER_ROUND = 4  # subscribers of each front door reset at each publication
HEALTHY = 3


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        await node.stop()


async def pusher_member(port: int, keep_alive: bool) -> OwnedWs:
    ws = await OwnedWs.upgrade(port, f"/app/{KEY}?protocol=7", keep_alive=keep_alive)
    hello = json.loads(await ws.read_text())
    assert hello["event"] == "pusher:connection_established", hello
    # more channels to leave: its end (which awaits the broker) takes longer
    for channel in ("feed", "side-1", "side-2"):
        ws.send_text_now(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
        while json.loads(await ws.read_text())["event"] != "pusher_internal:subscription_succeeded":
            pass
    return ws


async def ws_member(port: int, keep_alive: bool) -> tuple[OwnedWs, str]:
    ws = await OwnedWs.upgrade(port, "/dev", keep_alive=keep_alive)
    ws.send_text_now(json.dumps({"action": "whoami"}))
    return ws, await ws.read_text()


class Stalled:
    """Node B stopped (SIGSTOP) for the duration of the block, then resumed."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def __aenter__(self) -> None:
        assert self.node.proc is not None
        self.node.proc.send_signal(signal.SIGSTOP)

    async def __aexit__(self, *_: Any) -> None:
        await asyncio.sleep(0.05)  # what A published is in B's socket buffer
        assert self.node.proc is not None
        self.node.proc.send_signal(signal.SIGCONT)


def errors(node: Node) -> list[str]:
    return [
        line
        for line in node.log().splitlines()
        if "Traceback" in line or " ERROR " in line or "CRITICAL" in line
    ]


async def test_cross_node_delivery_skips_reset_members_on_every_front_door(
    tmp_path: Path, nodes: list[Node]
) -> None:
    # the heartbeats may pause while B is stalled
    config = cluster_config(tmp_path, redis_url(), heartbeat_s=0.5, node_ttl_s=10.0)
    a, b = await start_nodes(config, 2)
    nodes += [a, b]
    base_a = f"http://127.0.0.1:{a.port}"
    n_doomed = ROUNDS * PER_ROUND
    async with aiohttp.ClientSession() as http:

        async def join(conn_id: str) -> None:
            async with http.put(f"{base_a}/dev/@connections/{conn_id}/channels/c") as r:
                assert r.status == 204, await r.text()

        # Pusher: subscribers of "feed" on B
        pushers = [await Client.connect(b) for _ in range(HEALTHY)]
        for c in pushers:
            assert (await c.subscribe("feed"))["event"].endswith("subscription_succeeded")
        doomed_p = [await pusher_member(b.port, i % 2 == 0) for i in range(n_doomed)]
        # websocket API: members of "c" on B, joined through A
        sockets = []
        for _ in range(HEALTHY):
            ws = await websockets.connect(f"ws://127.0.0.1:{b.port}/dev")
            await ws.send(json.dumps({"action": "whoami"}))
            await join(str(await asyncio.wait_for(ws.recv(), 10)))
            sockets.append(ws)
        doomed_w = []
        for i in range(n_doomed):
            raw, conn_id = await ws_member(b.port, i % 3 != 0)
            await join(conn_id)
            doomed_w.append(raw)
        # AppSync Events: subscribers of /default/feed on B
        events = [await EventsClient.connect(b.port) for _ in range(HEALTHY)]
        for e in events:
            assert (await e.subscribe("h", "/default/feed"))["type"] == "subscribe_success"
        doomed_e = []
        for i in range(n_doomed):
            d = await OwnedEvents.connect_events(b.port, keep_alive=i % 3 != 0)
            await d.subscribe("d1", "/default/feed")
            await d.subscribe("d2", "/default/*")
            doomed_e.append(d)

        p = sdk(a)
        for round_ in range(ROUNDS):
            batch = slice(round_ * PER_ROUND, (round_ + 1) * PER_ROUND)
            async with Stalled(b):
                for d in doomed_p[batch]:
                    d.reset()
                await p.trigger("feed", "tick", {"n": round_})  # raises unless 200
            async with Stalled(b):
                for d in doomed_w[batch]:
                    d.reset()
                async with http.post(f"{base_a}/dev/@channels/c", data=f"m{round_}") as r:
                    assert r.status == 200, await r.text()
            async with Stalled(b):
                for d in doomed_e[batch]:
                    d.reset()
                body = {"channel": "/default/feed", "events": [json.dumps({"n": round_})]}
                headers = {"x-api-key": API_KEY}
                async with http.post(f"{base_a}/event", json=body, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["failed"] == []
            for c in pushers:
                assert json.loads((await c.expect("tick", timeout=10))["data"]) == {"n": round_}
            for ws in sockets:
                assert await asyncio.wait_for(ws.recv(), 10) == f"m{round_}"
            for e in events:
                frame = await e.recv()
                assert frame["type"] == "data" and json.loads(frame["event"]) == {"n": round_}
        for c in pushers:
            await c.close()
        for ws in sockets:
            await ws.close()
        for e in events:
            await e.close()
    assert b.alive and a.alive
    assert errors(b) == [], b.log()
    assert errors(a) == [], a.log()
