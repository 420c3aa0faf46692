"""Reference servers, each the plain idiomatic use of its library on uvloop (no gateway work).

    python refservers.py {picows,websockets,aiohttp-hello} PORT

Benchmark protocol (text frames, no compression): ``/sub`` subscribers are remembered until they
close; ``/pub``'s first frame is the marker ``PUB``, every later frame goes unchanged to every
subscriber; ``/echo`` sends every frame back. ``aiohttp-hello`` is a plain HTTP server whose every
POST reads the body and answers ``200 ok`` (the yardstick for ``@connections`` POSTs).
Each prints ``LISTENING <port>`` once it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import uvloop

HOST = "127.0.0.1"
BACKLOG = 4096


async def picows_server(port: int) -> None:
    from picows import (
        WSListener,
        WSMsgType,
        WSUpgradeResponse,
        WSUpgradeResponseWithListener,
        ws_create_server,
    )

    text, close = WSMsgType.TEXT, WSMsgType.CLOSE
    subscribers: set[Any] = set()

    class Base(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, t: Any, frame: Any) -> None:
            if frame.msg_type == close:
                t.send_close(frame.get_close_code())
                t.disconnect()
            elif frame.msg_type == text:
                self.on_text(t, frame.get_payload_as_bytes())

        def on_text(self, t: Any, payload: bytes) -> None:
            pass

    class Sub(Base):
        def on_ws_connected(self, t: Any) -> None:
            subscribers.add(t)

        def on_ws_disconnected(self, t: Any) -> None:
            subscribers.discard(t)

    class Pub(Base):
        marker = True

        def on_text(self, t: Any, payload: bytes) -> None:
            if self.marker:
                self.marker = False
                if payload == b"PUB":
                    return
            for s in subscribers:
                s.send(text, payload)

    class Echo(Base):
        def on_text(self, t: Any, payload: bytes) -> None:
            t.send(text, payload)

    paths = {b"/sub": Sub, b"/pub": Pub, b"/echo": Echo}

    def route(request: Any) -> Any:
        cls = paths.get(request.path)
        if cls is None:
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(404), None)
        return cls()

    server = await ws_create_server(route, HOST, port, backlog=BACKLOG)
    print(f"LISTENING {port}", flush=True)
    await server.serve_forever()


async def websockets_server(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    subscribers: set[Any] = set()

    async def handle(ws: Any) -> None:
        path = ws.request.path
        if path == "/sub":
            subscribers.add(ws)
            try:
                await ws.wait_closed()
            finally:
                subscribers.discard(ws)
        elif path == "/pub":
            marker = True
            async for message in ws:
                if marker:
                    marker = False
                    if message == "PUB":
                        continue
                broadcast(subscribers, message)
        elif path == "/echo":
            async for message in ws:
                await ws.send(message)

    async with serve(
        handle, HOST, port, compression=None, ping_interval=None, backlog=BACKLOG
    ) as server:
        print(f"LISTENING {port}", flush=True)
        await server.serve_forever()


async def aiohttp_hello(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=BACKLOG).start()
    print(f"LISTENING {port}", flush=True)
    await asyncio.Event().wait()


async def aiohttp_ws(port: int) -> None:
    """aiohttp's own WebSocket server, nothing else: the ceiling of sockway's transport.
    ``/echo`` echoes each text message; any other path accepts and holds the connection."""
    from aiohttp import WSMsgType, web

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        echo = request.path == "/echo"
        async for msg in ws:
            if echo and msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=BACKLOG).start()
    print(f"LISTENING {port}", flush=True)
    await asyncio.Event().wait()


SERVERS = {
    "picows": picows_server,
    "websockets": websockets_server,
    "aiohttp-hello": aiohttp_hello,
    "aiohttp-ws": aiohttp_ws,
}

if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(SERVERS[kind](port))
