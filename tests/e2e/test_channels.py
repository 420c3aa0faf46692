"""sockway's channel extension: join/leave, broadcast, members, slow consumers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import aiohttp
import websockets

from tests.conftest import StartGateway
from tests.e2e.rawws import RawClient
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until


async def test_join_broadcast_list_leave_and_membership_ends_on_disconnect(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    base = f"http://127.0.0.1:{gw.port}/dev"
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with aiohttp.ClientSession() as http:
        clients = [await websockets.connect(url) for _ in range(3)]
        ids = [e["requestContext"]["connectionId"] for e in of_type(recorded(), "CONNECT")]
        for conn_id in ids:
            async with http.put(
                f"{base}/@connections/{quote(conn_id, safe='')}/channels/room-1"
            ) as r:
                assert r.status == 204
        async with http.post(f"{base}/@channels/room-1", data=b'{"say":"hi"}') as r:
            assert r.status == 200
            assert (await r.json())["delivered"] == 3
        for ws in clients:
            assert await asyncio.wait_for(ws.recv(), 5) == '{"say":"hi"}'
        async with http.get(f"{base}/@channels/room-1") as r:
            assert sorted((await r.json())["connectionIds"]) == sorted(ids)

        async with http.delete(
            f"{base}/@connections/{quote(ids[0], safe='')}/channels/room-1"
        ) as r:
            assert r.status == 204
        await clients[1].close()
        await wait_until(lambda: len(of_type(recorded(), "DISCONNECT")) == 1)
        async with http.get(f"{base}/@channels/room-1") as r:
            assert (await r.json())["connectionIds"] == [ids[2]]
        async with http.post(f"{base}/@channels/room-1", data=b"second") as r:
            assert (await r.json())["delivered"] == 1
        assert await asyncio.wait_for(clients[2].recv(), 5) == "second"

        # Unknown connections and bad names get clear answers.
        async with http.put(f"{base}/@connections/nope%3D/channels/room-1") as r:
            assert r.status == 410 and r.headers["x-amzn-ErrorType"] == "GoneException"
        async with http.post(f"{base}/@channels/bad%20name", data=b"x") as r:
            assert r.status == 400 and r.headers["x-amzn-ErrorType"] == "BadRequestException"
        async with http.post(f"{base}/@channels/empty", data=b"x") as r:
            assert (await r.json())["delivered"] == 0
        for ws in clients:
            await ws.close()


async def test_slow_consumer_is_disconnected_not_buffered(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway(
        {"apis": [api(handlers_dir(tmp_path), limits={"outbox_max_bytes": 64 * 1024})]}
    )
    base = f"http://127.0.0.1:{gw.port}/dev"
    stalled = await RawClient.connect(gw.port, "/dev", read_limit=4096)
    stalled_id = of_type(recorded(), "CONNECT")[-1]["requestContext"]["connectionId"]
    reader = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", max_size=None)
    reader_id = of_type(recorded(), "CONNECT")[-1]["requestContext"]["connectionId"]
    payload = b"x" * 100 * 1024
    async with aiohttp.ClientSession() as http:
        for conn_id in (stalled_id, reader_id):
            async with http.put(f"{base}/@connections/{quote(conn_id, safe='')}/channels/feed"):
                pass
        dropped = 0
        for _ in range(400):
            async with http.post(f"{base}/@channels/feed", data=payload) as r:
                dropped += (await r.json())["disconnectedSlowConsumers"]
            assert await asyncio.wait_for(reader.recv(), 5) == payload.decode()
            if dropped:
                break
    assert dropped == 1
    await wait_until(
        lambda: any(
            e["requestContext"]["connectionId"] == stalled_id
            for e in of_type(recorded(), "DISCONNECT")
        )
    )
    ctx = next(
        e["requestContext"]
        for e in of_type(recorded(), "DISCONNECT")
        if e["requestContext"]["connectionId"] == stalled_id
    )
    assert ctx["disconnectStatusCode"] == 1008
    # The reading client is unaffected.
    await reader.send('{"action":"echo"}')
    try:
        assert await asyncio.wait_for(reader.recv(), 5) == '{"action":"echo"}'
    finally:
        await reader.close()
        stalled.close()
