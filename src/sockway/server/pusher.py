"""The ``type: pusher`` front door: Pusher protocol v7 at ``/app/{key}`` and the HTTP API.

All Pusher apps of a gateway share one set of routes (``/app/{key}``, ``/apps/{app_id}/...``,
``/users/{user_id}/terminate_connections``); a registry stored on the aiohttp application finds
the app by key, id or ``auth_key``. An unknown key still gets a WebSocket that is told
``pusher:error`` 4001 and closed with 4001, which pusher-js treats as "do not reconnect"
(pusher spec §1.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from sockway.api.pusher_http import PusherHttpApi
from sockway.brokers.base import BrokerUnavailable
from sockway.config.pusher import PusherApp
from sockway.core.connection import Connection
from sockway.core.ids import ConnectionId
from sockway.protocols.pusher import messages as wire
from sockway.server.apigw import AiohttpSink
from sockway.server.frontdoor import Endpoint, GatewayContext, ListenInfo
from sockway.server.pusher_app import PusherAppState, PusherSocket
from sockway.server.pusher_cluster import PusherCluster
from sockway.server.pusher_session import handle_frame, sweep
from sockway.server.pusher_webhook_targets import build_target
from sockway.server.pusher_webhooks import Webhooks
from sockway.server.sniffer import UpgradeHandler

log = logging.getLogger("sockway.pusher")


@dataclass
class PusherRegistry:
    """The Pusher apps served by one aiohttp application."""

    by_key: dict[str, PusherFrontDoor] = field(default_factory=dict)
    by_id: dict[str, PusherFrontDoor] = field(default_factory=dict)

    async def upgrade(self, request: web.Request) -> web.StreamResponse:
        return await _upgrade(self, request)

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
        return {}  # served by aiohttp

    def pending_work(self) -> set[asyncio.Future[Any]]:
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_task(self._finish())
        return {self._finished}

    async def _finish(self) -> None:
        """Sessions end (their webhooks are queued), then webhook deliveries finish."""
        while self.sessions:
            await asyncio.gather(*self.sessions, return_exceptions=True)
        if self.app.cluster is not None:
            await self.app.cluster.cluster.flush()  # channel_vacated of the last leaves
        await self.app.webhooks.finish()

    # -- WebSocket --------------------------------------------------------------------------

    async def serve_socket(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        app, s = self.app, self.app.settings
        now = app.node.now_ms()
        conn = Connection(
            id=ConnectionId(app.new_socket_id()),
            api_name=app.name,
            sink=AiohttpSink(ws, request.transport),
            connected_at_ms=now,
            source_ip=str(request.remote or ""),
            user_agent=request.headers.get("User-Agent"),
            outbox_max_bytes=s.outbox_max_bytes,
        )
        sock = PusherSocket(conn, last_seen_ms=now)
        app.node.add(conn)
        app.node.open(conn)
        refusal = await self._refusal()
        if refusal is not None:
            app.close_with_error(sock, *refusal)
        else:
            app.add(sock)
            if s.enable_user_authentication:
                sock.auth_deadline_ms = now + int(s.user_authentication_timeout_s * 1000)
            app.metrics.connects.labels(app.name).inc()
            app.metrics.connections.labels(app.name).inc()
            app.send(sock, wire.connection_established(sock.socket_id, s.activity_timeout_s))
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and refusal is None:
                    app.metrics.messages_in.labels(app.name).inc()
                    try:
                        pending = handle_frame(app, sock, msg.data)
                        if pending is not None:  # a change that awaits the cluster's broker
                            await pending
                    except Exception:  # our bug: log it, keep serving the socket
                        log.exception("pusher frame handling failed", extra={"api": app.name})
                        app.send(sock, wire.error(wire.SERVER_ERROR, "A server error has occured."))
        finally:
            try:
                if refusal is None:
                    app.metrics.connections.labels(app.name).dec()
                    await app.remove(sock)
            finally:
                app.node.remove(conn)
                self.sessions.discard(task)

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


async def _upgrade(registry: PusherRegistry, request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response({"error": "Upgrade Required", "code": 426}, status=426)
    door = registry.by_key.get(request.match_info["key"])
    max_size = door.app.settings.max_message_bytes + 1 if door is not None else 4096
    ws = web.WebSocketResponse(max_msg_size=max_size, compress=False, autoping=True)
    try:
        await ws.prepare(request)
    except (ConnectionResetError, OSError):
        return ws
    if door is None:
        key = request.match_info["key"][:64]
        with contextlib.suppress(ConnectionError):
            await ws.send_str(
                wire.error(wire.APP_NOT_FOUND, f"App key {key} does not exist.").decode()
            )
            await ws.close(code=wire.APP_NOT_FOUND)
        return ws
    await door.serve_socket(request, ws)
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
