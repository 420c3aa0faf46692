"""The websocket API across nodes (issue 6): @connections and channels reach a connection
wherever it is. Three in-process gateways on one ``MemoryBus`` form the cluster here; the same
behaviour on Redis with real gateway processes is in ``tests/e2e/test_redis_cluster.py``."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from sockway.brokers.memory import MemoryBroker, MemoryBus
from sockway.core.connection import State
from sockway.gateway.gateway import Gateway
from tests.conftest import StartGateway
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until


def _client(port: int) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"http://127.0.0.1:{port}/dev",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )


async def _cluster(start_gateway: StartGateway, tmp_path: Path, n: int) -> list[Gateway]:
    bus = MemoryBus()
    config = {"apis": [api(handlers_dir(tmp_path))]}
    return [await start_gateway(config, broker=MemoryBroker(bus, grace_s=0.05)) for _ in range(n)]


def _conn_ids() -> list[str]:
    return [e["requestContext"]["connectionId"] for e in of_type(recorded(), "CONNECT")]


async def test_connections_api_reaches_a_connection_on_another_node(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    a, b, _ = await _cluster(start_gateway, tmp_path, 3)
    client_b = _client(b.port)
    async with websockets.connect(f"ws://127.0.0.1:{a.port}/dev", user_agent_header="ua/1") as ws:
        await wait_until(lambda: len(_conn_ids()) == 1)
        conn_id = _conn_ids()[0]
        await wait_until(lambda: _is_open(a, conn_id))
        assert b.node.get("t", conn_id) is None
        await asyncio.to_thread(client_b.post_to_connection, ConnectionId=conn_id, Data=b"via B")
        assert await asyncio.wait_for(ws.recv(), 5) == "via B"
        info = await asyncio.to_thread(client_b.get_connection, ConnectionId=conn_id)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ua/1"}
        await asyncio.to_thread(client_b.delete_connection, ConnectionId=conn_id)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    await wait_until(lambda: a.node.get("t", conn_id) is None)
    with pytest.raises(client_b.exceptions.GoneException):
        await asyncio.to_thread(client_b.post_to_connection, ConnectionId=conn_id, Data=b"late")


async def test_channel_broadcast_reaches_members_on_every_node_once(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateways = await _cluster(start_gateway, tmp_path, 3)
    sockets = [
        await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") for gw in gateways for _ in (1, 2)
    ]
    try:
        await wait_until(lambda: len(_conn_ids()) == 6)
        ids = _conn_ids()
        await wait_until(lambda: all(any(_is_open(gw, i) for gw in gateways) for i in ids))
        # Memberships made through node C, whatever node holds the connection.
        client_c = _client(gateways[2].port)
        for conn_id in ids:
            await asyncio.to_thread(_join, client_c, conn_id, "room")
        for gw in gateways:
            listed = await asyncio.to_thread(_members, gw.port, "room")
            assert sorted(listed) == sorted(ids)
        for i, gw in enumerate(gateways):
            await asyncio.to_thread(_broadcast, gw.port, "room", f"from {i}".encode())
        for ws in sockets:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
            assert sorted(got) == ["from 0", "from 1", "from 2"]
        # Nothing more: each message arrived exactly once.
        await asyncio.to_thread(_broadcast, gateways[0].port, "room", b"end")
        for ws in sockets:
            assert await asyncio.wait_for(ws.recv(), 5) == "end"
        # Leaving through another node ends delivery to that connection.
        await asyncio.to_thread(_leave, client_c, ids[0], "room")
        listed = await asyncio.to_thread(_members, gateways[1].port, "room")
        assert sorted(listed) == sorted(ids[1:])
    finally:
        for ws in sockets:
            await ws.close()


def _is_open(gw: Gateway, conn_id: str) -> bool:
    conn = gw.node.get("t", conn_id)
    return conn is not None and conn.state is State.OPEN


def _join(client: Any, conn_id: str, channel: str) -> None:
    _call(client, "PUT", f"/@connections/{conn_id}/channels/{channel}")


def _leave(client: Any, conn_id: str, channel: str) -> None:
    _call(client, "DELETE", f"/@connections/{conn_id}/channels/{channel}")


def _members(port: int, channel: str) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/dev/@channels/{channel}") as r:
        ids: list[str] = json.load(r)["connectionIds"]
        return ids


def _broadcast(port: int, channel: str, body: bytes) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/dev/@channels/{channel}", data=body, method="POST"
    )
    with urllib.request.urlopen(req) as r:
        assert r.status == 200


def _call(client: Any, method: str, path: str) -> None:
    """A management call botocore has no operation for (sockway's channel extension)."""
    req = urllib.request.Request(client.meta.endpoint_url + path, method=method)
    with urllib.request.urlopen(req) as r:
        assert r.status == 204
