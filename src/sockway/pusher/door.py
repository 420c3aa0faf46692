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
import time
from collections.abc import Awaitable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import orjson
from aiohttp import web

from sockway.brokers.base import BrokerUnavailable
from sockway.core.connection import Connection
from sockway.core.frames import encode_text_frame
from sockway.core.ids import ChannelName, ConnectionId
from sockway.frontdoor.contract import Endpoint, GatewayContext, ListenInfo
from sockway.observability.tap import Activity, Tap
from sockway.pusher import wire
from sockway.pusher.cluster import PusherCluster
from sockway.pusher.http_api import CORS, PusherHttpApi
from sockway.pusher.session import handle_frame, sweep
from sockway.pusher.settings import PusherApp, WebhookSpec
from sockway.pusher.state import PusherAppState, PusherSocket
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
            handler, max_size = _UnknownApp(key, self.tap, source_ip), 4096
        else:
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

    __slots__ = ("_door", "_source_ip", "_user_agent", "close_code", "gone", "sock", "started")

    def __init__(self, door: PusherFrontDoor, source_ip: str, user_agent: str | None) -> None:
        self._door = door
        self._source_ip = source_ip
        self._user_agent = user_agent
        self.sock: PusherSocket | None = None
        self.started = False
        self.gone = False
        self.close_code: tuple[int, str] | None = None

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
        started = time.monotonic()
        try:
            refusal = await self._door._refusal()
            if self.gone:
                return
            if refusal is not None:
                self._activity("connect", 503, started, {"pusher_error": refusal[0]})
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
            self._activity("connect", 200, started)
        finally:
            gate.set_result(None)

    def _activity(
        self,
        kind: Literal["connect", "disconnect", "message"],
        status: int,
        started: float | None,
        detail: dict[str, Any] | None = None,
        route_key: str | None = None,
        payload: str | None = None,
        channel: str | None = None,
    ) -> None:
        tap, sock = self._door.app.tap, self.sock
        if tap.active and sock is not None:
            tap.emit(
                Activity(
                    kind,
                    self._door.app.name,
                    connection_id=sock.socket_id,
                    route_key=route_key or f"${kind}",
                    status=status,
                    latency_ms=None if started is None else (time.monotonic() - started) * 1000,
                    ip=self._source_ip,
                    payload=payload,
                    channel=channel,
                    detail={"user_agent": self._user_agent, **(detail or {})},
                )
            )

    def message(self, data: str | bytes) -> asyncio.Task[None] | None:
        sock = self.sock
        if not self.started or sock is None:
            return None  # refused: closing
        app = self._door.app
        app.metrics.messages_in.labels(app.name).inc()
        if app.tap.active:
            self._message(data)
        app.bytes_in.inc(len(data) if isinstance(data, bytes) else len(data.encode()))
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

    def _message(self, data: str | bytes) -> None:
        """A MESSAGE line: the frame's ``event`` is its route key (``pusher:subscribe``,
        ``client-*``); the outcome of a Pusher frame is a frame, so the status is 200."""
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            frame = None
        event = frame.get("event") if isinstance(frame, dict) else None
        # The channel it concerns: ``channel`` of a client event, ``data.channel`` of a
        # (un)subscribe.
        channel = frame.get("channel") if isinstance(frame, dict) else None
        if channel is None and isinstance(frame, dict) and isinstance(frame.get("data"), dict):
            channel = frame["data"].get("channel")
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        self._activity(
            "message",
            200,
            None,
            route_key=str(event) if event else "$default",
            payload=text,
            channel=channel if isinstance(channel, str) else None,
        )

    def client_closed(self, code: int, reason: str) -> None:
        self.close_code = (code, reason)

    def closed(self, failure: tuple[int, str] | None) -> None:
        self.gone = True
        if self.sock is not None:
            # Nothing is written to it while its channels are left (that awaits the broker):
            # the member events of its own leaving skip it, and those of others too.
            self._door.app.node.closing(self.sock.conn)
        if self.started:
            close = failure or self.close_code or (1006, "")
            self._activity(
                "disconnect", 200, None, {"close_code": close[0], "close_reason": close[1]}
            )
        self._track(self._end())

    async def _end(self) -> None:
        app, sock = self._door.app, self.sock
        assert sock is not None
        try:
            if self.started:
                app.metrics.connections.labels(app.name).dec()
                app.metrics.pusher_disconnections.labels(app.name, app.settings.app_id).inc()
                await app.remove(sock)
        finally:
            app.node.remove(sock.conn)
            self._door.open_count -= 1


class _UnknownApp:
    """An upgrade to ``/app/{key}`` of no app: ``pusher:error`` 4001 and close 4001, which
    pusher-js treats as "do not reconnect" (pusher spec §1.4)."""

    __slots__ = ("_ip", "_key", "_tap")

    def __init__(self, key: str, tap: Tap, source_ip: str) -> None:
        self._key = key[:64]
        self._tap = tap
        self._ip = source_ip

    def opened(self, sink: Sink, hold: Hold) -> None:
        if self._tap.active:  # a refused handshake: no app, so no API name ("-")
            detail = {"app_key": self._key, "close_code": wire.APP_NOT_FOUND}
            self._tap.emit(
                Activity(
                    "connect", "-", route_key="$connect", status=404, ip=self._ip, detail=detail
                )
            )
        text = wire.error(wire.APP_NOT_FOUND, f"App key {self._key} does not exist.")
        sink.write_frame(encode_text_frame(text))
        sink.close(wire.APP_NOT_FOUND, "")

    def message(self, data: str | bytes) -> None:
        return None

    def client_closed(self, code: int, reason: str) -> None:
        return None

    def closed(self, failure: tuple[int, str] | None) -> None:
        return None


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
        handler = _UnknownApp(request.match_info["key"], registry.tap, str(peer[0]) if peer else "")
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
