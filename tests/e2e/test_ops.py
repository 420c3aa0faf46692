"""Operations: health, readiness, metrics and graceful shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import StartGateway
from tests.e2e.support import HANDLERS, api, handlers_dir, of_type, recorded


async def test_health_ready_metrics(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    base = f"http://127.0.0.1:{gw.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health") as r:
            assert r.status == 200
        async with http.get(f"{base}/ready") as r:
            assert r.status == 200
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
            await ws.send('{"action":"echo"}')
            await ws.recv()
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
        assert 'sockway_connections{api="t"} 1.0' in text
        assert 'sockway_messages_in_total{api="t"} 1.0' in text
        assert 'sockway_messages_out_total{api="t"} 1.0' in text
        assert 'sockway_handler_duration_seconds_count{api="t",route="echo"} 1.0' in text


async def test_graceful_shutdown_runs_disconnect_for_every_connection(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    clients = [await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") for _ in range(3)]
    port = gw.port
    stopping = asyncio.create_task(gw.stop(grace_s=5))
    for ws in clients:
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    await asyncio.wait_for(stopping, 10)
    disconnects = of_type(recorded(), "DISCONNECT")
    assert len(disconnects) == 3
    assert {d["requestContext"]["disconnectStatusCode"] for d in disconnects} == {1001}
    # No longer accepting.
    with pytest.raises(OSError):
        await websockets.connect(f"ws://127.0.0.1:{port}/dev", open_timeout=2)


async def test_not_ready_while_draining(start_gateway: StartGateway, tmp_path: Path) -> None:
    slow_disconnect = HANDLERS.replace(
        "def disconnect(event, context):\n", "def disconnect(event, context):\n    time.sleep(1)\n"
    )
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path, slow_disconnect))]})
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev")
    connector = aiohttp.TCPConnector(limit=1)  # one kept-alive connection, opened before drain
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.get(f"http://127.0.0.1:{gw.port}/ready") as r:
            assert r.status == 200
        stopping = asyncio.create_task(gw.stop(grace_s=5))
        await asyncio.sleep(0.2)  # stop() is now waiting for the slow $disconnect
        assert not stopping.done()
        async with http.get(f"http://127.0.0.1:{gw.port}/ready") as r:
            assert r.status == 503
        await asyncio.wait_for(stopping, 10)
    assert len(of_type(recorded(), "DISCONNECT")) == 1
    await ws.close()


async def test_shutdown_lets_accepted_messages_finish(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    slow_oneway = HANDLERS.replace(
        "def oneway(event, context):\n", "def oneway(event, context):\n    time.sleep(0.5)\n"
    )
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path, slow_oneway))]})
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev")
    await ws.send('{"action":"oneway"}')
    await asyncio.sleep(0.1)  # the message is being handled
    await asyncio.wait_for(gw.stop(grace_s=5), 10)
    assert len(of_type(recorded(), "MESSAGE")) == 1
    assert len(of_type(recorded(), "DISCONNECT")) == 1
