"""Draining a Pusher app while some transports are already gone (issue 17 case 8).

On uvloop a write to a transport whose peer reset it raises ``RuntimeError`` until the
connection's end has run; a drain that met such a socket stopped ``sockway serve`` with a
traceback (9 of 145 stops). The test runs on uvloop, as ``sockway serve`` does (asyncio's own
loop drops such a write silently).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop
import websockets

from sockway.gateway.config import parse_config
from sockway.gateway.gateway import Gateway
from tests.e2e.pusher_support import Client, pusher_app


async def _drain_with_a_dead_transport(tmp_path: Path) -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    config = {"listen": "127.0.0.1:0", "state_dir": str(tmp_path), "apis": [pusher_app()]}
    gw = Gateway(parse_config(config, tmp_path))
    await gw.start()
    try:
        gone, alive = await Client.connect(gw), await Client.connect(gw)
        await gone.subscribe("news")
        await alive.subscribe("news")
        conns = {str(c.id): c for c in gw.node.connections()}
        # The state a peer's reset leaves: uvloop closed the handle (one loop turn after the
        # abort) while the socket's end (leaving its channels) has not finished.
        raw = conns[gone.socket_id].sink._raw  # type: ignore[attr-defined]
        raw.abort()
        for _ in range(100):
            await asyncio.sleep(0)
            try:
                raw.write(b"")
            except RuntimeError:
                break  # "the handler is closed"
        else:
            raise AssertionError("uvloop never closed the aborted transport's handle")
        assert gone.socket_id in gw.front_doors[0].app.sockets  # type: ignore[attr-defined]
        await gw.stop(grace_s=5)
        err = await alive.expect("pusher:error")
        assert err["data"] == {"code": 4200, "message": "Server closed. Please reconnect shortly."}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await alive.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4200
    finally:
        await gw.stop(grace_s=1)


def test_drain_passes_a_transport_that_is_already_closed(tmp_path: Path) -> None:
    uvloop.run(asyncio.wait_for(_drain_with_a_dead_transport(tmp_path), 30))
