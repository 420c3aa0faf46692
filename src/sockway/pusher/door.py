"""The ``type: pusher`` front door: Pusher protocol v7 at ``/app/{key}`` and the HTTP API.

All Pusher apps of a gateway share one set of routes (``/app/{key}``, ``/apps/{app_id}/...``,
``/users/{user_id}/terminate_connections``); a registry stored on the aiohttp application finds
the app by key, id or ``auth_key``. An unknown key still gets a WebSocket that is told
``pusher:error`` 4001 and closed with 4001, which pusher-js treats as "do not reconnect"
(pusher spec §1.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sockway.brokers.base import BrokerUnavailable
from sockway.core.connection import Connection
from sockway.core.frames import encode_text_frame
from sockway.core.ids import ConnectionId
from sockway.frontdoor.contract import Endpoint, GatewayContext, ListenInfo
from sockway.pusher import wire
from sockway.pusher.cluster import PusherCluster
from sockway.pusher.http_api import PusherHttpApi
from sockway.pusher.session import handle_frame, sweep
from sockway.pusher.settings import PusherApp
from sockway.pusher.state import PusherAppState, PusherSocket
from sockway.pusher.webhook_targets import build_target
from sockway.pusher.webhooks import Webhooks
from sockway.transport.aiohttp_ws import AiohttpSink, serve_aiohttp
from sockway.transport.eager import start_message
from sockway.transport.picows_ws import (
    Hold,
    MessageHandler,
    PicowsConnection,
    Sink,
    start_websocket,
    until_closed,
)
from sockway.transport.sniffer import UpgradeHandler
from sockway.transport.upgrade_head import RequestHead

log = logging.getLogger("sockway.pusher")


@dataclass
class PusherRegistry:
    """The Pusher apps served by one aiohttp application."""

    by_key: dict[str, PusherFrontDoor] = field(default_factory=dict)
    by_id: dict[str, PusherFrontDoor] = field(default_factory=dict)

    async def upgrade(self, request: web.Request) -> web.StreamResponse:
        return await _upgrade(self, request)

    def fast_upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        """``UpgradeHandler`` of ``/app/{key}`` (``transport/sniffer.py``): served by picows."""
        key = unquote(head.path[len("/app/") :])  # decoded, as aiohttp's match_info
        door = self.by_key.get(key)
        handler: MessageHandler
        if door is None:
            handler, max_size = _UnknownApp(key), 4096
        else:
            peer = transport.get_extra_info("peername")
            source_ip = str(peer[0]) if peer else ""
            handler = _PusherConnection(door, source_ip, head.header("User-Agent"))
            max_size = door.app.settings.max_message_bytes
        # A window of one: a frame is fully applied before the next is read (pusher_session).
        listener = PicowsConnection(handler, 1, max_size)
        try:
            start_websocket(transport, raw, listener, None, max_size)
        except Exception:  # e.g. the transport was closed meanwhile
            log.exception("handshake failed", extra={"api": door.name if door else "pusher"})
            transport.abort()

    async def by_app_id(self, request: web.Request) -> web.StreamResponse:
        return await _by_app_id(self, request)

    async def by_auth_key(self, request: web.Request) -> web.StreamResponse:
        return await _by_key(self, request)


REGISTRY = web.AppKey("sockway.pusher", PusherRegistry)


class PusherFrontDoor:
    def __init__(self, app: PusherAppState) -> None:
        self.app = app
        self.http = PusherHttpApi(app)
        self.sessions: set[asyncio.Task[Any]] = set()
        self.open_count = 0  # open sockets, both transports
        self.registry: PusherRegistry | None = None
        self._finished: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.app.name

    def add_routes(self, app: web.Application) -> None:
        registry = app.get(REGISTRY)
        if registry is None:
            registry = PusherRegistry()
            app[REGISTRY] = registry
            app.router.add_get("/app/{key}", registry.upgrade)
            app.router.add_route("*", "/apps/{app_id}/{tail:.*}", registry.by_app_id)
            app.router.add_route(
                "*", "/users/{user_id}/terminate_connections", registry.by_auth_key
            )
        registry.by_key[self.app.settings.key] = self
        registry.by_id[self.app.settings.app_id] = self
        self.registry = registry

    def bind(self, listen: ListenInfo) -> Endpoint:
        s = self.app.settings
        host = listen.public_host
        urls = [("Pusher WebSocket", f"ws://{host}:{listen.plain_port}/app/{s.key}")]
        if listen.tls_port:
            urls.append(("Pusher WebSocket TLS", f"wss://{host}:{listen.tls_port}/app/{s.key}"))
        scheme, port = (
            ("https", listen.tls_port) if listen.tls_port else ("http", listen.plain_port)
        )
        urls.append(("Pusher HTTP API", f"{scheme}://{host}:{port}/apps/{s.app_id}"))
        return Endpoint(s.name, tuple(urls))

    def sweep(self, now_ms: int) -> None:
        sweep(self.app, now_ms)

    def drain(self) -> None:
        """Refuse new sockets and tell every client to reconnect elsewhere (4200, spec §5.9)."""
        self.app.draining = True
        for sock in list(self.app.sockets.values()):
            self.app.close_with_error(
                sock, wire.RECONNECT, "Server closed. Please reconnect shortly."
            )

    def upgrades(self) -> Mapping[str, UpgradeHandler]:
        # A new connection's upgrade to /app/{key} is served by picows (transport/picows_ws.py).
        assert self.registry is not None, "upgrades() before add_routes()"
        return {"/app/": self.registry.fast_upgrade}

    def pending_work(self) -> set[asyncio.Future[Any]]:
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_task(self._finish())
        return {self._finished}

    async def _finish(self) -> None:
        """Sessions end (their webhooks are queued), then webhook deliveries finish."""
        await until_closed(lambda: self.open_count)
        while self.sessions:
            await asyncio.gather(*self.sessions, return_exceptions=True)
        if self.app.cluster is not None:
            await self.app.cluster.cluster.flush()  # channel_vacated of the last leaves
        await self.app.webhooks.finish()

    async def _refusal(self) -> tuple[int, str] | None:
        app, s = self.app, self.app.settings
        if app.draining:
            return wire.RECONNECT, "Server is closing. Please reconnect shortly."
        if not s.enabled:
            return wire.APP_DISABLED, "The app is not enabled."
        if s.max_connections >= 0 and s.max_connections <= await self._open_sockets():
            return (
                wire.OVER_QUOTA,
                "The current concurrent connections quota has been reached.",
            )
        return None

    async def _open_sockets(self) -> int:
        """The app's sockets on every node (this node's exactly, the others' as they last
        reported them); this node's alone while the broker is unreachable."""
        app = self.app
        if app.cluster is None or not app.cluster.available:
            return len(app.sockets)
        try:
            return await app.cluster.sockets(len(app.sockets))
        except BrokerUnavailable:
            return len(app.sockets)


class _PusherConnection:
    """One Pusher socket, on either transport (``MessageHandler``): the quota check holds
    the socket's frames, then each frame is applied (``pusher_session.handle_frame``) and,
    with a window of one, fully applied before the next."""

    __slots__ = ("_door", "_source_ip", "_user_agent", "gone", "sock", "started")

    def __init__(self, door: PusherFrontDoor, source_ip: str, user_agent: str | None) -> None:
        self._door = door
        self._source_ip = source_ip
        self._user_agent = user_agent
        self.sock: PusherSocket | None = None
        self.started = False
        self.gone = False

    def opened(self, sink: Sink, hold: Hold) -> None:
        door, app = self._door, self._door.app
        now = app.node.now_ms()
        conn = Connection(
            id=ConnectionId(app.new_socket_id()),
            api_name=app.name,
            sink=sink,
            connected_at_ms=now,
            source_ip=self._source_ip,
            user_agent=self._user_agent,
            outbox_max_bytes=app.settings.outbox_max_bytes,
        )
        self.sock = sock = PusherSocket(conn, last_seen_ms=now)
        app.node.add(conn)
        app.node.open(conn)
        door.open_count += 1
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hold(gate)
        self._track(self._start(sock, gate))

    def _track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._door.sessions.add(task)
        task.add_done_callback(self._door.sessions.discard)
        return task

    async def _start(self, sock: PusherSocket, gate: asyncio.Future[None]) -> None:
        app, s = self._door.app, self._door.app.settings
        try:
            refusal = await self._door._refusal()
            if self.gone:
                return
            if refusal is not None:
                app.close_with_error(sock, *refusal)
                return
            app.add(sock)
            if s.enable_user_authentication:
                sock.auth_deadline_ms = app.node.now_ms() + int(
                    s.user_authentication_timeout_s * 1000
                )
            app.metrics.connects.labels(app.name).inc()
            app.metrics.connections.labels(app.name).inc()
            app.send(sock, wire.connection_established(sock.socket_id, s.activity_timeout_s))
            self.started = True
        finally:
            gate.set_result(None)

    def message(self, data: str | bytes) -> asyncio.Task[None] | None:
        sock = self.sock
        if not self.started or sock is None:
            return None  # refused: closing
        app = self._door.app
        app.metrics.messages_in.labels(app.name).inc()
        try:
            pending = handle_frame(app, sock, data)
        except Exception:  # our bug: log it, keep serving the socket
            self._failed()
            return None
        if pending is None:
            return None
        return start_message(self._finish_frame(pending))  # eager on 3.12+

    async def _finish_frame(self, pending: Awaitable[None]) -> None:
        try:
            await pending  # a change that awaits the cluster's broker
        except Exception:
            self._failed()

    def _failed(self) -> None:
        app = self._door.app
        log.exception("pusher frame handling failed", extra={"api": app.name})
        if self.sock is not None:
            app.send(self.sock, wire.error(wire.SERVER_ERROR, "A server error has occured."))

    def client_closed(self, code: int, reason: str) -> None:
        return None

    def closed(self, failure: tuple[int, str] | None) -> None:
        self.gone = True
        self._track(self._end())

    async def _end(self) -> None:
        app, sock = self._door.app, self.sock
        assert sock is not None
        try:
            if self.started:
                app.metrics.connections.labels(app.name).dec()
                await app.remove(sock)
        finally:
            app.node.remove(sock.conn)
            self._door.open_count -= 1


class _UnknownApp:
    """An upgrade to ``/app/{key}`` of no app: ``pusher:error`` 4001 and close 4001, which
    pusher-js treats as "do not reconnect" (pusher spec §1.4)."""

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        self._key = key[:64]

    def opened(self, sink: Sink, hold: Hold) -> None:
        text = wire.error(wire.APP_NOT_FOUND, f"App key {self._key} does not exist.")
        sink.write_frame(encode_text_frame(text))
        sink.close(wire.APP_NOT_FOUND, "")

    def message(self, data: str | bytes) -> None:
        return None

    def client_closed(self, code: int, reason: str) -> None:
        return None

    def closed(self, failure: tuple[int, str] | None) -> None:
        return None


async def _upgrade(registry: PusherRegistry, request: web.Request) -> web.StreamResponse:
    """aiohttp's handler: an upgrade that followed other requests on its connection."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response({"error": "Upgrade Required", "code": 426}, status=426)
    door = registry.by_key.get(request.match_info["key"])
    max_size = door.app.settings.max_message_bytes + 1 if door is not None else 4096
    ws = web.WebSocketResponse(max_msg_size=max_size, compress=False, autoping=True)
    try:
        await ws.prepare(request)
    except (ConnectionResetError, OSError):
        return ws
    handler: MessageHandler
    if door is None:
        handler = _UnknownApp(request.match_info["key"])
    else:
        handler = _PusherConnection(
            door, str(request.remote or ""), request.headers.get("User-Agent")
        )
    await serve_aiohttp(ws, AiohttpSink(ws, request.transport), handler, 1)
    return ws


async def _by_app_id(registry: PusherRegistry, request: web.Request) -> web.StreamResponse:
    app_id = request.match_info["app_id"]
    door = registry.by_id.get(app_id)
    if door is None:
        return PusherHttpApi.error(404, f"The app {app_id[:64]} could not be found.")
    return await door.http.handle(request, request.match_info["tail"])


async def _by_key(registry: PusherRegistry, request: web.Request) -> web.StreamResponse:
    """The py SDK's ``terminate_user_connections`` path has no app id (spec §3.2)."""
    door = registry.by_key.get(request.query.get("auth_key", ""))
    if door is None:
        return PusherHttpApi.error(401, "Unknown auth_key.")
    tail = f"users/{request.match_info['user_id']}/terminate_connections"
    return await door.http.handle(request, tail)


def build_pusher_app(settings: PusherApp, ctx: GatewayContext) -> PusherFrontDoor:
    targets = [(spec, build_target(spec)) for spec in settings.webhooks]
    hooks = Webhooks(settings, targets, ctx.metrics, ctx.node.now_ms)
    app = PusherAppState(settings, ctx.node, ctx.metrics, hooks)
    app.cluster = PusherCluster(app, ctx.cluster)  # one app across the nodes (issue 6)
    return PusherFrontDoor(app)
