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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sockway.brokers.base import BrokerUnavailable
from sockway.core.ids import ChannelName
from sockway.frontdoor.contract import Endpoint, GatewayContext, ListenInfo
from sockway.observability.tap import Tap
from sockway.pusher import wire
from sockway.pusher.cluster import PusherCluster
from sockway.pusher.connection import PusherConnection, UnknownApp
from sockway.pusher.http_api import CORS, PusherHttpApi
from sockway.pusher.session import sweep
from sockway.pusher.settings import PusherApp, WebhookSpec
from sockway.pusher.state import PusherAppState
from sockway.pusher.webhook_targets import build_target
from sockway.pusher.webhooks import Webhooks
from sockway.runtimes.base import Integration
from sockway.runtimes.factory import FunctionSpec
from sockway.transport.aiohttp_ws import (
    AiohttpSink,
    serve_aiohttp,
    version_refusal,
    websocket_response,
)
from sockway.transport.handler import MessageHandler, until_closed
from sockway.transport.picows_ws import PicowsConnection, start_websocket
from sockway.transport.sniffer import UpgradeHandler
from sockway.transport.upgrade_head import RequestHead

log = logging.getLogger("sockway.pusher")


@dataclass
class PusherRegistry:
    """The Pusher apps served by one aiohttp application."""

    by_key: dict[str, PusherFrontDoor] = field(default_factory=dict)
    by_id: dict[str, PusherFrontDoor] = field(default_factory=dict)
    tap: Tap = field(default_factory=Tap)  # the gateway's: refusals of unknown app keys

    async def upgrade(self, request: web.Request) -> web.StreamResponse:
        return await _upgrade(self, request)

    def fast_upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        """``UpgradeHandler`` of ``/app/{key}`` (``transport/sniffer.py``): served by picows."""
        key = unquote(head.path[len("/app/") :])  # decoded, as aiohttp's match_info
        door = self.by_key.get(key)
        handler: MessageHandler
        peer = transport.get_extra_info("peername")
        source_ip = str(peer[0]) if peer else ""
        if door is None:
            handler, max_size = UnknownApp(key, self.tap, source_ip), 4096
        else:
            handler = PusherConnection(door, source_ip, head.header("User-Agent"))
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
            registry = PusherRegistry(tap=self.app.tap)
            app[REGISTRY] = registry
            app.router.add_get("/app/{key}", registry.upgrade)
            # soketi's health answer (issue 17 case 5): 200 "OK", with CORS as every answer.
            app.router.add_route("GET", "/", _root)
            app.router.add_route("OPTIONS", "/", _root)
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

    async def publish_text(self, channel: str, data: str, event: str | None) -> int:
        """``Operable``: an API-triggered event, as ``POST /apps/{id}/events`` sends it."""
        if not channel or len(channel) > 164:
            raise ValueError("a Pusher channel name has 1-164 characters")
        before = self.app.node.member_count(self.app.name, ChannelName(channel))
        await self.app.trigger(channel, event or "message", data, None)
        return before

    def connection_details(self, connection_id: str) -> dict[str, Any]:
        sock = self.app.sockets.get(connection_id)
        if sock is None:
            return {}
        return {"userId": sock.user_id, "presence": {k: str(v) for k, v in sock.presence.items()}}

    def sweep(self, now_ms: int) -> None:
        sweep(self.app, now_ms)

    def drain(self) -> None:
        """Refuse new sockets and tell every client to reconnect elsewhere (4200, spec §5.9)."""
        self.app.draining = True
        # A socket whose peer reset the transport (its end not run yet) is skipped by the
        # sink (issue 17 case 8), so the drain goes on with the others.
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
        await _all_done(self.sessions)
        await _all_done(self.app.watchlists.tasks)  # the offline announcements of the last sockets
        if self.app.cluster is not None:
            await self.app.cluster.cluster.flush()  # channel_vacated of the last leaves
        await self.app.webhooks.finish()

    async def refusal(self) -> tuple[int, str] | None:
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


async def not_found(_: web.Request) -> web.Response:
    """A gateway of Pusher apps only answers an unknown path as soketi does: 404, with CORS
    (issue 17 case 5; ``gateway.registry.ApiType.unmatched``)."""
    return web.Response(status=404, headers=CORS)


async def _root(request: web.Request) -> web.Response:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS)
    return web.Response(text="OK", headers=CORS)


async def _upgrade(registry: PusherRegistry, request: web.Request) -> web.StreamResponse:
    """aiohttp's handler: an upgrade that followed other requests on its connection."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.json_response({"error": "Upgrade Required", "code": 426}, status=426)
    refused = version_refusal(request)
    if refused is not None:
        return refused
    door = registry.by_key.get(request.match_info["key"])
    max_size = door.app.settings.max_message_bytes + 1 if door is not None else 4096
    ws = websocket_response((), max_size)
    try:
        await ws.prepare(request)
    except (ConnectionResetError, OSError):
        return ws
    handler: MessageHandler
    if door is None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        handler = UnknownApp(request.match_info["key"], registry.tap, str(peer[0]) if peer else "")
    else:
        handler = PusherConnection(
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


async def _all_done(tasks: set[asyncio.Task[Any]]) -> None:
    """Wait until every task of ``tasks`` is done, those added meanwhile too.

    Only the tasks not done yet are awaited: a done task leaves the set in a done callback,
    which runs on a later loop iteration, and awaiting ``gather`` of done tasks never yields,
    so ``while tasks: await gather(*tasks)`` spun forever at 100 % CPU on a shutdown that met
    one (seen on Python 3.13, whose eager tasks finish before their callbacks run).
    """
    while pending := [task for task in tasks if not task.done()]:
        await asyncio.gather(*pending, return_exceptions=True)


def build_pusher_app(settings: PusherApp, ctx: GatewayContext) -> PusherFrontDoor:
    def handler(spec: WebhookSpec) -> Integration:
        assert spec.handler is not None
        index = settings.webhooks.index(spec)
        return ctx.integrations.build(
            FunctionSpec(
                ref=spec.handler,
                function_name=spec.function_name or f"{settings.name}-webhook{index}",
                code_dir=spec.code_dir or settings.code_dir,
                region=settings.region,
                account_id=settings.account_id,
                memory_mb=spec.memory_mb or settings.memory_mb,
                environment=spec.merged_environment(settings.environment),
                runtime=spec.runtime or settings.runtime,
                timeout_s=spec.timeout_s or settings.webhook_delivery.timeout_s,
                reserved_concurrency=spec.reserved_concurrency,
                http=settings.http,
                aws_lambda=settings.lambda_,
            )
        )

    targets = [(spec, build_target(spec, handler, ctx.new_id)) for spec in settings.webhooks]
    hooks = Webhooks(settings, targets, ctx.metrics, ctx.node.now_ms)
    app = PusherAppState(settings, ctx.node, ctx.metrics, hooks)
    app.tap = ctx.tap
    app.cluster = PusherCluster(app, ctx.cluster)  # one app across the nodes (issue 6)
    return PusherFrontDoor(app)
