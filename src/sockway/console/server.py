"""The console's HTTP side: the page, its JSON API, the live stream and the actions.

Routes, under ``console.path`` (``/_sockway/``):

- ``GET {path}`` — the page (``static/index.html``); ``static/*`` its ES modules and CSS;
- ``GET {path}api/state`` — APIs with their URLs, connections, the kept tail and invocations;
  ``?connection=api/id`` or ``?channel=api/name`` for one view's tail;
- ``GET {path}api/stream`` — Server-Sent Events: one ``item`` event per activity;
- ``POST {path}api/send``, ``api/disconnect``, ``api/publish`` — the actions.

Protection. Without a token the console is served only when every listener binds a loopback
address (``Settings.loopback_only``); then a request must also name a loopback host in
``Host`` (a DNS-rebinding page cannot reach it). With a token every request must carry it:
``Authorization: Bearer <token>``, or the cookie the page sets after ``?token=`` was given once.
The decision depends on the configured bind address, never on the peer's address (a reverse
proxy on the same machine makes every peer look local). Actions must carry the header
``X-Sockway-Console: 1``, which a cross-site form cannot send without a CORS preflight that is
never granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from sockway.brokers.base import BrokerUnavailable
from sockway.console.settings import ConsoleSettings
from sockway.console.tail import Tail, mask_value
from sockway.core.connection import Connection, SendResult
from sockway.core.node import Node
from sockway.frontdoor.contract import Endpoint, FrontDoor, Operable
from sockway.observability.tap import Activity, Tap

log = logging.getLogger("sockway.console")

COOKIE = "sockway_console"
ACTION_HEADER = "X-Sockway-Console"
STREAM_QUEUE_ITEMS = 1000  # per open page; a page that falls further behind is told to reload
DISCONNECT_CLOSE = (1000, "Disconnected from the sockway console")
_LAGGING, _CLOSING = "lagging", "closing"
_STATIC = {"console.js": "text/javascript", "console.css": "text/css"}


@dataclass(frozen=True)
class ApiView:
    """One API as the console shows it (given by the gateway)."""

    name: str
    type: str
    door: FrontDoor
    endpoint: Endpoint | None


class Console:
    def __init__(
        self,
        settings: ConsoleSettings,
        node: Node,
        tap: Tap,
        apis: Callable[[], Sequence[ApiView]],
    ) -> None:
        self.settings = settings
        self.node = node
        self.apis = apis
        self.path = settings.path
        self.tail = Tail(settings.tail_items, settings.payload_max_bytes)
        self._token = settings.token.get_secret_value() if settings.token else None
        self._unsubscribe = tap.subscribe(self.tail.record, detailed=True)
        self._streams: set[asyncio.Queue[dict[str, Any] | str]] = set()

    def close(self) -> None:
        """Stop listening and end the open streams (the gateway is stopping)."""
        self._unsubscribe()
        for queue in self._streams:
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(_CLOSING)

    def add_routes(self, app: web.Application) -> None:
        p = self.path
        app.router.add_get(p, self._page)
        app.router.add_get(p.rstrip("/"), self._to_page)
        app.router.add_get(p + "static/{name}", self._static)
        app.router.add_get(p + "api/state", self._state)
        app.router.add_get(p + "api/stream", self._stream)
        app.router.add_post(p + "api/send", self._send)
        app.router.add_post(p + "api/disconnect", self._disconnect)
        app.router.add_post(p + "api/publish", self._publish)

    # -- protection -----------------------------------------------------------------------

    def _denied(self, request: web.Request) -> web.Response | None:
        if self._token is None:
            if not _loopback_host(request.host):
                return web.json_response({"message": "Forbidden: not a loopback host"}, status=403)
            return None
        given = ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        elif COOKIE in request.cookies:
            given = request.cookies[COOKIE]
        if given and hmac.compare_digest(given.encode(), self._token.encode()):
            return None
        return web.json_response(
            {"message": "Unauthorized: the console needs its token"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="sockway console"'},
        )

    def _action_denied(self, request: web.Request) -> web.Response | None:
        denied = self._denied(request)
        if denied is None and request.headers.get(ACTION_HEADER) != "1":
            return web.json_response({"message": f"missing header {ACTION_HEADER}: 1"}, status=403)
        return denied

    # -- the page -------------------------------------------------------------------------

    async def _to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(self.path)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token")
        if self._token is not None and token is not None:
            if not hmac.compare_digest(token.encode(), self._token.encode()):
                return _login_page(self.path, wrong=True)
            response = web.HTTPFound(self.path)  # the token leaves the address bar
            response.set_cookie(
                COOKIE, token, path=self.path, httponly=True, samesite="Strict", secure=False
            )
            raise response
        denied = self._denied(request)
        if denied is not None:
            return _login_page(self.path) if denied.status == 401 else denied
        html = resources.files("sockway.console").joinpath("static/index.html").read_text()
        return web.Response(
            text=html,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied is not None:
            return denied
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        body = resources.files("sockway.console").joinpath(f"static/{name}").read_bytes()
        return web.Response(body=body, content_type=_STATIC[name])

    # -- state and stream -----------------------------------------------------------------

    async def _state(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied is not None:
            return denied
        apis = []
        for view in self.apis():
            conns = [_describe(c, view.door) for c in self.node.connections(view.name)]
            apis.append(
                {
                    "name": view.name,
                    "type": view.type,
                    "urls": [list(u) for u in view.endpoint.urls] if view.endpoint else [],
                    "canPublish": isinstance(view.door, Operable),
                    "connections": [c for c in conns if c is not None],
                }
            )
        body = {
            "apis": apis,
            "tail": self.tail.view(request.query.get("connection"), request.query.get("channel")),
            "invocations": self.tail.recent_invocations(),
            "limits": {"tailItems": self.tail.items, "payloadMaxBytes": self.tail.payload_max},
        }
        return web.json_response(body, dumps=lambda v: orjson.dumps(v).decode())

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        denied = self._denied(request)
        if denied is not None:
            return denied
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue(STREAM_QUEUE_ITEMS)

        def listener(item: dict[str, Any]) -> None:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:  # this page fell behind: tell it once, then stop
                with contextlib.suppress(ValueError):
                    self.tail.listeners.remove(listener)
                queue.get_nowait()
                queue.put_nowait(_LAGGING)

        self.tail.listeners.append(listener)
        self._streams.add(queue)
        try:
            await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")  # proxies close silent streams
                    continue
                if item == _LAGGING:
                    await response.write(b"event: lagging\ndata: {}\n\n")
                    break
                if isinstance(item, str):  # _CLOSING
                    break
                await response.write(b"event: item\ndata: " + orjson.dumps(item) + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(queue)
            with contextlib.suppress(ValueError):
                self.tail.listeners.remove(listener)
        return response

    # -- actions --------------------------------------------------------------------------

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json(loads=orjson.loads)
        except ValueError:
            raise web.HTTPBadRequest(text="body must be a JSON object") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    def _connection(self, body: dict[str, Any]) -> Connection:
        conn = self.node.get(str(body.get("api", "")), str(body.get("connectionId", "")))
        if conn is None:
            raise web.HTTPGone(
                text=orjson.dumps({"message": "no such connection on this node"}).decode(),
                content_type="application/json",
            )
        return conn

    async def _send(self, request: web.Request) -> web.StreamResponse:
        """Send text to a connection, as ``POST @connections/{id}`` does (this node's)."""
        denied = self._action_denied(request)
        if denied is not None:
            return denied
        body = await self._json(request)
        conn = self._connection(body)
        data = str(body.get("data", ""))
        result = conn.send_text(data.encode(), self.node.now_ms())
        if result is not SendResult.SENT:
            return web.json_response({"message": f"not sent: {result.name.lower()}"}, status=410)
        self.tail.record(
            Activity(
                "out", conn.api_name, connection_id=conn.id, payload=data, detail={"by": "console"}
            )
        )
        return web.json_response({"sent": True})

    async def _disconnect(self, request: web.Request) -> web.StreamResponse:
        denied = self._action_denied(request)
        if denied is not None:
            return denied
        conn = self._connection(await self._json(request))
        conn.sink.close(*DISCONNECT_CLOSE)
        return web.json_response({"disconnected": True})

    async def _publish(self, request: web.Request) -> web.StreamResponse:
        denied = self._action_denied(request)
        if denied is not None:
            return denied
        body = await self._json(request)
        name = str(body.get("api", ""))
        view = next((v for v in self.apis() if v.name == name), None)
        if view is None or not isinstance(view.door, Operable):
            return web.json_response({"message": f"no API '{name}' to publish to"}, status=404)
        event = body.get("event")
        try:
            delivered = await view.door.publish_text(
                str(body.get("channel", "")),
                str(body.get("data", "")),
                str(event) if event else None,
            )
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        except BrokerUnavailable as exc:  # the door published to nobody (docs/brokers.md)
            message = f"not published, nobody got it: {exc}"
            return web.json_response({"message": message}, status=503)
        return web.json_response({"delivered": delivered})


def _loopback_host(host_header: str) -> bool:
    """``Host`` names this machine's loopback: ``localhost``, 127.0.0.0/8 or ``[::1]``, with
    or without a port. A name that only starts like one (``127.0.0.1.evil.example``) is not."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe(conn: Connection, door: FrontDoor) -> dict[str, Any] | None:
    if conn.state.value != "open":
        return None
    info: dict[str, Any] = {
        "id": conn.id,
        "ip": conn.source_ip,
        "userAgent": conn.user_agent,
        "connectedAt": conn.connected_at_ms,
        "lastActive": conn.last_active_ms,
        "channels": sorted(conn.channels),
        "authorizer": mask_value(conn.authorizer) if conn.authorizer else None,
    }
    if isinstance(door, Operable):
        info.update(mask_value(door.connection_details(conn.id)))
    return info


_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _login_page(path: str, wrong: bool = False) -> web.Response:
    note = "<p class=err>That token is not the console's.</p>" if wrong else ""
    html = (
        "<!doctype html><meta charset=utf-8><title>sockway console: token</title>"
        "<body style='font:15px system-ui;margin:3em'><h1>sockway console</h1>"
        "<p>This gateway listens on a non-loopback address: the console needs its token "
        "(<code>console.token</code>).</p>"
        f"{note}<form method=get action='{path}'><input name=token type=password "
        "autofocus size=40> <button>Open</button></form>"
    )
    return web.Response(
        text=html, status=401, content_type="text/html", headers={"Cache-Control": "no-store"}
    )
