"""``sockway serve --template`` on a WebSocket API whose routes are ``HTTP_PROXY`` integrations
(README "HTTP_PROXY integrations"; ``runtimes.http_proxy``).

A real ``sockway`` process serves ``tests/e2e/projects/sam_http_proxy/template.yaml``; a real
aiohttp backend on an ephemeral port records every request it gets; real websockets clients.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from aiohttp import web
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from sockway.projects.resources import derived_id
from tests.e2e.projects_support import copy_project, serve_project


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    query: list[tuple[str, str]]
    body: bytes


@dataclass
class Backend:
    url: str
    seen: list[Seen] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def next(self, path: str, timeout_s: float = 30) -> Seen:
        """The first request to ``path`` (waits for it), removed from ``seen``."""
        async with asyncio.timeout(timeout_s):
            while True:
                for i, request in enumerate(self.seen):
                    if request.path == path:
                        return self.seen.pop(i)
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def backend() -> AsyncIterator[Backend]:
    """The game service: refuses ``$connect`` with 403 for ``token=deny``, answers moves."""
    state = Backend("")

    async def record(request: web.Request) -> web.Response:
        seen = Seen(
            request.method,
            request.path,
            dict(request.headers),
            list(request.query.items()),
            await request.read(),
        )
        state.seen.append(seen)
        state.arrived.set()
        if request.path == "/connect":
            if request.query.get("token") == "deny":
                return web.Response(status=403, text="go away")
            offered = request.headers.get("Sec-WebSocket-Protocol", "")
            chosen = {"Sec-WebSocket-Protocol": "game.v2"} if "game.v2" in offered else {}
            return web.Response(status=200, headers=chosen)
        if request.path == "/moves":
            if "X-Game" not in request.headers:
                return web.json_response({"error": "which game?"}, status=400)
            reply = {"ok": True, "connectionId": request.headers.get("connectionId")}
            return web.json_response(reply, status=202)
        if request.path == "/replays":
            await asyncio.sleep(5)  # longer than the integration's TimeoutInMillis (300)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _logged(log: list[str], text: str, timeout_s: float = 30) -> str:
    """The first line of sockway's stderr holding ``text`` (read by a task: waits for it)."""
    async with asyncio.timeout(timeout_s):
        while True:
            for line in log:
                if text in line:
                    return line
            await asyncio.sleep(0.05)


def _header(seen: Seen, name: str) -> str | None:
    for key, value in seen.headers.items():
        if key.lower() == name.lower():
            return value
    return None


@pytest.mark.timeout(120)
async def test_http_proxy_routes_pass_messages_through(tmp_path: Path) -> None:
    project = copy_project("sam_http_proxy", tmp_path)
    dead = f"http://127.0.0.1:{_free_port()}"
    async with (
        backend() as game,
        serve_project(
            project,
            "--template",
            "template.yaml",
            "--parameter",
            f"BackendUrl={game.url}",
            "--parameter",
            f"LegacyUrl={dead}",
        ) as served,
    ):
        assert "HTTP_PROXY" not in served.banner  # no "gets the JSON event" note any more
        url = f"ws://127.0.0.1:{served.port}/live"

        # $connect: the backend's 403 refuses the upgrade with 403.
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{url}?token=deny")
        assert refused.value.response.status_code == 403
        await game.next("/connect")

        async with websockets.connect(
            f"{url}?token=t0k3n&other=x",
            additional_headers={"X-Client-Version": "7.1"},
            subprotocols=[Subprotocol("game.v1"), Subprotocol("game.v2")],
        ) as ws:
            # The backend chose a subprotocol with its answer's Sec-WebSocket-Protocol.
            assert ws.subprotocol == "game.v2"
            connect = await game.next("/connect")
            assert connect.method == "POST"
            assert connect.body == b""
            connection_id = _header(connect, "connectionId")
            assert connection_id
            # The handshake's headers are forwarded, less the WebSocket key exchange.
            assert _header(connect, "X-Client-Version") == "7.1"
            assert _header(connect, "User-Agent") == ws.request.headers["User-Agent"]
            assert _header(connect, "X-Forwarded-For") == "127.0.0.1"
            assert _header(connect, "Sec-WebSocket-Key") is None
            assert _header(connect, "Upgrade") is None
            assert _header(connect, "Sec-WebSocket-Protocol") == "game.v1, game.v2"
            # Only the mapped query parameter reaches the backend.
            assert connect.query == [("token", "t0k3n")]

            # A two-way route: the raw message is the body; the reply goes back as-is.
            message = '{"action": "move", "game": {"id": "g-42"}, "to": [3, 4]}'
            await ws.send(message)
            move = await game.next("/moves")
            assert move.method == "PUT"
            assert move.body == message.encode()
            assert _header(move, "connectionId") == connection_id
            assert _header(move, "X-Route") == "move"
            assert _header(move, "X-Game") == "g-42"
            assert _header(move, "X-Env") == "production"
            assert _header(move, "X-Source") == "websocket"
            assert _header(move, "Content-Type") == "application/json"
            query = dict(move.query)
            assert set(query) == {"requestId", "api"} and query["requestId"]
            assert query["api"] == derived_id("api/GameApi", 10)  # the id sockway gave the API
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert reply == {"ok": True, "connectionId": connection_id}

            # The backend's answer reaches the client whatever its status (a proxy integration
            # has no integration response); a mapping whose source is missing is left out.
            await ws.send('{"action": "move", "to": [1, 1]}')
            assert _header(await game.next("/moves"), "X-Game") is None
            assert json.loads(await asyncio.wait_for(ws.recv(), 30)) == {"error": "which game?"}

            # No answer within TimeoutInMillis: API Gateway's timeout frame.
            await ws.send('{"action": "replay"}')
            assert (await game.next("/replays")).method == "POST"  # IntegrationMethod default
            slow = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert slow["message"] == "Endpoint request timed out"

            # The mapped id is the connection's own: @connections reaches this client.
            async with aiohttp.ClientSession() as http:
                posted = await http.post(
                    f"http://127.0.0.1:{served.port}/live/@connections/{connection_id}",
                    data=b"from the backend",
                )
                assert posted.status == 200
            assert await asyncio.wait_for(ws.recv(), 30) == "from the backend"

            # An unreachable backend: API Gateway's error frame, and the log says why.
            await ws.send("not json at all")
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert frame["message"] == "Internal server error"
            assert frame["connectionId"] == connection_id
            logged = await _logged(served.log, "EndpointUnreachable")
            assert f"POST {dead}/events failed" in logged

        # $disconnect: the mapped headers, no body, IntegrationMethod DELETE.
        gone = await game.next("/connections")
        assert gone.method == "DELETE"
        assert gone.body == b""
        assert _header(gone, "connectionId") == connection_id
        assert _header(gone, "X-Event") == "DISCONNECT"
