"""The WebSocket driver for ``type: websocket`` APIs (apigw spec §1-§3, §5-§7).

One ``ApiRuntime`` per configured API holds its routes and integrations. A connection whose
first request is the upgrade arrives through the listener's sniffer (``upgrade``) and, once
``$connect`` accepted it, is served by picows (``transport/picows_ws.py``);
an upgrade that follows other requests on a keep-alive connection reaches aiohttp's handler
``handle_upgrade``. Both run the same admission (``_admit``) and the same connection logic
(``_ApiConnection``). Event shapes, routing and authorizer decisions come from the pure modules in
``protocols/apigw`` and ``auth``; this module only drives sockets and turns integration
failures into the answers AWS gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from yarl import URL

from sockway.core.connection import Connection, SendResult
from sockway.core.ids import ConnectionId
from sockway.core.node import SLOW_CONSUMER_CLOSE, Node
from sockway.observability.metrics import Metrics
from sockway.runtimes.base import Integration, Invocation, InvocationError, InvocationTimeout
from sockway.transport.aiohttp_ws import AiohttpSink, serve_aiohttp
from sockway.transport.frame_guard import FrameGuard
from sockway.transport.picows_ws import (
    Hold,
    PicowsConnection,
    Sink,
    refuse_upgrade,
    start_websocket,
    until_closed,
)
from sockway.transport.upgrade_head import RequestHead
from sockway.websocket import wire
from sockway.websocket.authorizer import decide, identity_present
from sockway.websocket.events import (
    ApiIdentity,
    ConnectionFacts,
    UpgradeRequest,
    authorizer_event,
    connect_event,
    disconnect_event,
    message_event,
)
from sockway.websocket.routing import SelectionExpression, select_route
from sockway.websocket.settings import AuthorizerSpec, WebSocketApi

log = logging.getLogger("sockway.apigw")


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    integration: Integration
    route_response: bool
    timeout_s: float


@dataclass(slots=True)
class Authorizer:
    spec: AuthorizerSpec
    integration: Integration
    timeout_s: float


@dataclass(frozen=True, slots=True)
class _Refusal:
    """The HTTP answer to an upgrade that is not accepted."""

    status: int
    body: dict[str, Any] | None  # JSON; None for a ``$connect`` route's own status (no body)


def _refuse(transport: asyncio.Transport, refusal: _Refusal) -> None:
    refuse_upgrade(transport, refusal.status, refusal.body)


class _ApiConnection:
    """One open connection of a websocket API, on either transport (``MessageHandler``):
    each text message dispatched (§3.1), binary data refused (§6), then ``$disconnect`` with
    how the connection ended (§3.4)."""

    __slots__ = ("_runtime", "client_close", "conn", "facts", "sink")

    def __init__(self, runtime: ApiRuntime, conn: Connection, facts: ConnectionFacts) -> None:
        self._runtime = runtime
        self.conn = conn
        self.facts = facts
        self.sink: Sink | None = None
        self.client_close: tuple[int, str] | None = None

    def opened(self, sink: Sink, hold: Hold) -> None:
        self.sink = sink
        self._runtime._opened(self.conn, sink)

    def message(self, data: str | bytes) -> asyncio.Task[None] | None:
        """Each text message runs on its own task, so one connection's messages run
        concurrently, as on AWS (up to ``max_inflight_messages``)."""
        if isinstance(data, bytes):
            assert self.sink is not None
            self.sink.close(wire.CLOSE_UNSUPPORTED_DATA, wire.REASON_BINARY)  # §6: → 1003
            return None
        runtime = self._runtime
        conn = self.conn
        conn.last_active_ms = runtime.node.now_ms()
        runtime._messages_in.inc()
        task = asyncio.get_running_loop().create_task(runtime._dispatch(conn, self.facts, data))
        runtime.inflight.add(task)
        return task

    def client_closed(self, code: int, reason: str) -> None:
        if code == wire.CLOSE_NO_STATUS:
            reason = wire.REASON_NO_STATUS
        self.client_close = (code, reason)

    def closed(self, failure: tuple[int, str] | None) -> None:
        """``$disconnect``'s status and reason: ours if we closed, the transport's for a
        protocol violation, else the client's, else 1006."""
        assert self.sink is not None
        cause = (
            self.sink.close_cause
            or failure
            or self.client_close
            or (wire.CLOSE_ABNORMAL, wire.REASON_ABNORMAL)
        )
        self._runtime._ended(self, cause)


@dataclass
class ApiRuntime:
    """A configured websocket API, ready to serve."""

    settings: WebSocketApi
    node: Node
    metrics: Metrics
    new_id: Callable[[], str]
    routes: dict[str, Route]
    authorizer: Authorizer | None
    identity: ApiIdentity | None = None  # set once the listener's port is known
    draining: bool = False
    expression: SelectionExpression = field(init=False)
    route_keys: frozenset[str] = field(init=False)
    # Tasks the gateway waits for when draining: open sessions and messages being handled.
    sessions: set[asyncio.Task[Any]] = field(default_factory=set)  # aiohttp's upgrades
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    handshakes: set[asyncio.Task[None]] = field(default_factory=set)  # the sniffer's upgrades
    disconnects: set[asyncio.Task[None]] = field(default_factory=set)
    open_count: int = 0  # open connections, both transports

    def __post_init__(self) -> None:
        self.expression = SelectionExpression.compile(self.settings.route_selection_expression)
        self.route_keys = frozenset(self.routes)
        # Per-message counters bound once: ``labels()`` builds a key each call (~1 µs with
        # prometheus_client's lock, three times per two-way message).
        self._messages_in = self.metrics.messages_in.labels(self.name)
        self._messages_out = self.metrics.messages_out.labels(self.name)
        self._handler_seconds: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def api(self) -> ApiIdentity:
        assert self.identity is not None, "ApiRuntime used before the gateway started"
        return self.identity

    # -- $connect -------------------------------------------------------------------------

    def _describe(
        self,
        headers: tuple[tuple[str, str], ...],
        query: tuple[tuple[str, str], ...],
        transport: asyncio.BaseTransport | None,
        user_agent: str | None,
    ) -> tuple[ConnectionFacts, UpgradeRequest]:
        peer = transport.get_extra_info("peername") if transport else None
        sock = transport.get_extra_info("sockname") if transport else None
        secure = transport is not None and transport.get_extra_info("sslcontext") is not None
        source_ip = str(peer[0]) if peer else "127.0.0.1"
        facts = ConnectionFacts(
            ConnectionId(self.new_id()), self.node.now_ms(), source_ip, user_agent
        )
        upgrade = UpgradeRequest(
            headers=headers,
            query=query,
            source_ip=source_ip,
            user_agent=user_agent,
            local_port=int(sock[1]) if sock else 0,
            scheme="https" if secure else "http",
        )
        return facts, upgrade

    async def _admit(
        self, facts: ConnectionFacts, upgrade: UpgradeRequest
    ) -> tuple[Connection, str | None] | _Refusal:
        """Authorizer and ``$connect`` (§3.2, §5): the CONNECTING connection and the
        subprotocol to select, or the HTTP answer refusing the upgrade."""
        extra = {"api": self.name, "connection_id": facts.connection_id}
        authorizer_ctx: dict[str, Any] | None = None
        if self.authorizer is not None:
            status, authorizer_ctx = await self._authorize(facts, upgrade, extra)
            if status != 200:
                self.metrics.connect_rejects.labels(self.name, str(status)).inc()
                body = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Internal server error")
                return _Refusal(status, {"message": body})
        conn = Connection(
            id=ConnectionId(facts.connection_id),
            api_name=self.name,
            sink=_Unprepared(),
            connected_at_ms=facts.connected_at_ms,
            source_ip=facts.source_ip,
            user_agent=facts.user_agent,
            outbox_max_bytes=self.settings.limits.outbox_max_bytes,
            authorizer=authorizer_ctx,
        )
        self.node.add(conn)  # CONNECTING: @connections answers 410 until $connect succeeds
        try:
            protocol, rejected = await self._run_connect(facts, upgrade, authorizer_ctx, extra)
        except BaseException:
            self.node.remove(conn)
            raise
        if rejected is not None:
            self.node.remove(conn)
            self.metrics.connect_rejects.labels(self.name, str(rejected)).inc()
            return _Refusal(rejected, None)
        return conn, protocol

    def _opened(self, conn: Connection, sink: Sink) -> None:
        conn.sink = sink
        self.node.open(conn)
        self.open_count += 1
        self.metrics.connects.labels(self.name).inc()
        self.metrics.connections.labels(self.name).inc()
        log.debug("connected", extra={"api": self.name, "connection_id": conn.id})

    def _ended(self, connection: _ApiConnection, cause: tuple[int, str]) -> None:
        """Out of the node, then ``$disconnect`` on a task of its own (drained on stop)."""
        self.open_count -= 1
        self.node.remove(connection.conn)
        self.metrics.connections.labels(self.name).dec()
        task = asyncio.get_running_loop().create_task(
            self._run_disconnect(connection.conn, connection.facts, *cause)
        )
        self.disconnects.add(task)
        task.add_done_callback(self.disconnects.discard)

    # The fast path: the sniffer's upgrades, served by picows.

    def upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        """``UpgradeHandler`` for ``GET /{stage}`` (``transport/sniffer.py``): run the admission
        and answer the handshake; reading on ``transport`` is paused until then."""
        task = asyncio.get_running_loop().create_task(self._upgrade(transport, head, raw))
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)

    async def _upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        try:
            if self.draining:
                _refuse(transport, _Refusal(503, {"message": "Service Unavailable"}))
                return
            if head.header("Sec-WebSocket-Version") != "13" or not head.header("Sec-WebSocket-Key"):
                # RFC 6455 §4.2.2: answered before any handler runs, as aiohttp did
                _refuse(transport, _Refusal(400, {"message": "Bad Request"}))
                return
            query = tuple(URL.build(query_string=head.query_string, encoded=True).query.items())
            facts, upgrade = self._describe(
                head.headers, query, transport, head.header("User-Agent")
            )
            admitted = await self._admit(facts, upgrade)
        except Exception:
            log.exception("upgrade failed", extra={"api": self.name})
            _refuse(transport, _Refusal(500, {"message": "Internal server error"}))
            return
        if isinstance(admitted, _Refusal):
            _refuse(transport, admitted)
            return
        conn, protocol = admitted
        if self.draining:  # the gateway began to drain while $connect ran
            self.node.remove(conn)
            _refuse(transport, _Refusal(503, {"message": "Service Unavailable"}))
            return
        limits = self.settings.limits
        connection = _ApiConnection(self, conn, facts)
        listener = PicowsConnection(
            connection, limits.max_inflight_messages, limits.max_message_bytes, self.inflight
        )
        try:
            start_websocket(transport, raw, listener, protocol, limits.max_frame_bytes)
        except Exception:  # e.g. the transport was closed meanwhile
            log.exception("handshake failed", extra={"api": self.name})
            transport.abort()
        if connection.sink is None:
            self.node.remove(conn)  # picows refused the handshake (400), or it failed

    async def drained(self) -> None:
        """Every connection has closed and run its ``$disconnect`` (polled: used only while
        the gateway drains)."""
        await until_closed(lambda: self.open_count or self.handshakes or self.disconnects)

    # The aiohttp path: an upgrade that came after other requests on its connection.

    async def handle_upgrade(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _json_response(426, {"message": "Upgrade Required"})
        if self.draining:
            return _json_response(503, {"message": "Service Unavailable"})
        facts, upgrade = self._describe(
            tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers),
            tuple(request.query.items()),
            request.transport,
            request.headers.get("User-Agent"),
        )
        admitted = await self._admit(facts, upgrade)
        if isinstance(admitted, _Refusal):
            if admitted.body is None:
                return web.Response(status=admitted.status)
            return _json_response(admitted.status, admitted.body)
        conn, protocol = admitted
        # This frame lives as long as the connection: drop what only the handshake needed
        # (the headers copied for $connect), ~1 KB per idle connection.
        del upgrade
        ws = web.WebSocketResponse(
            protocols=(protocol,) if protocol else (),
            # aiohttp rejects a message of exactly max_msg_size; AWS accepts 128 KB exactly.
            max_msg_size=self.settings.limits.max_message_bytes + 1,
            compress=False,  # apigw spec §3.3: permessage-deflate not negotiated
            autoping=True,
        )
        try:
            await ws.prepare(request)
        except (ConnectionResetError, OSError):
            self.node.remove(conn)
            return ws
        sink = AiohttpSink(ws, request.transport)
        guard = request.transport.get_protocol() if request.transport else None
        if isinstance(guard, FrameGuard):
            guard.arm(self.settings.limits.max_frame_bytes, sink.frame_too_big)
        task = asyncio.current_task()
        assert task is not None
        self.sessions.add(task)
        try:
            await serve_aiohttp(
                ws,
                sink,
                _ApiConnection(self, conn, facts),
                self.settings.limits.max_inflight_messages,
                self.inflight,
            )
        finally:
            self.sessions.discard(task)
        return ws

    async def _authorize(
        self, facts: ConnectionFacts, upgrade: UpgradeRequest, extra: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        assert self.authorizer is not None
        spec = self.authorizer.spec
        if not identity_present(
            spec.identity_source, upgrade.headers, upgrade.query, self.settings.stage_variables
        ):
            return 401, None  # §5.1: not invoked when an identity source is missing
        request_id = self.new_id()
        event = authorizer_event(
            self.api, facts, upgrade, request_id=request_id, now_ms=self.node.now_ms()
        )
        started = time.monotonic()
        try:
            result = await self._invoke(
                self.authorizer.integration,
                "$authorizer",
                event,
                request_id,
                self.authorizer.timeout_s,
                extra,
            )
        except InvocationError as exc:
            if exc.error_message == "Unauthorized":
                return 401, None
            return 500, None
        except InvocationTimeout:
            return 500, None
        decision = decide(
            result, self.api.connect_method_arn, int((time.monotonic() - started) * 1000)
        )
        if decision.problem:
            log.error("authorizer answer rejected: %s", decision.problem, extra=extra)
        return decision.status, decision.authorizer

    async def _run_connect(
        self,
        facts: ConnectionFacts,
        upgrade: UpgradeRequest,
        authorizer_ctx: dict[str, Any] | None,
        extra: dict[str, Any],
    ) -> tuple[str | None, int | None]:
        """Run ``$connect``; return (subprotocol to select, rejection status or None)."""
        route = self.routes.get("$connect")
        if route is None:
            return None, None  # §3.2: no $connect route → accept
        request_id = self.new_id()
        event = connect_event(
            self.api,
            facts,
            upgrade,
            request_id=request_id,
            now_ms=self.node.now_ms(),
            authorizer=authorizer_ctx,
        )
        try:
            result = await self._invoke(
                route.integration, route.key, event, request_id, route.timeout_s, extra
            )
        except InvocationError:
            return None, 502  # §3.2: Lambda raised → 502
        except InvocationTimeout:
            return None, 504  # §3.2 [unknown on AWS]: REST answers 504
        if result is None:
            return None, None
        if not isinstance(result, dict):
            log.error(
                "$connect returned %s, not a proxy response object",
                type(result).__name__,
                extra=extra,
            )
            return None, 502
        status = result.get("statusCode", 200)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            log.error("$connect returned an invalid statusCode %r", status, extra=extra)
            return None, 502
        if not 200 <= status < 300:
            return None, status
        return _subprotocol(result), None

    # -- messages -------------------------------------------------------------------------

    async def _dispatch(self, conn: Connection, facts: ConnectionFacts, body: str) -> None:
        request_id = self.new_id()
        extra = {"api": self.name, "connection_id": conn.id, "request_id": request_id}
        route_key = select_route(self.expression, body, self.route_keys)
        if route_key is None:
            self._send(conn, wire.forbidden_frame(conn.id, request_id))
            return
        route = self.routes[route_key]
        event = message_event(
            self.api,
            facts,
            route_key=route_key,
            body=body,
            message_id=self.new_id(),
            request_id=request_id,
            now_ms=self.node.now_ms(),
            authorizer=conn.authorizer,
        )
        try:
            result = await self._invoke(
                route.integration, route_key, event, request_id, route.timeout_s, extra
            )
        except InvocationTimeout:
            self._send(conn, wire.timeout_frame(conn.id, request_id))
            return
        except InvocationError:
            self._send(conn, wire.internal_error_frame(conn.id, request_id))
            return
        if not route.route_response or result is None:
            return  # §3.1: one-way routes discard the result
        if isinstance(result, dict):
            out = result.get("body")
            if out is None:
                return  # §3.1 [unknown on AWS]: no body → send nothing
            if isinstance(out, str):
                self._send(conn, out.encode())
                return
        log.error(
            "two-way route returned a malformed proxy response (body must be a string)",
            extra={**extra, "route": route_key},
        )
        self._send(conn, wire.internal_error_frame(conn.id, request_id))

    def _send(self, conn: Connection, payload: bytes) -> SendResult:
        result = conn.send_text(payload, self.node.now_ms())
        if result is SendResult.SENT:
            self._messages_out.inc()
        elif result is SendResult.OUTBOX_FULL:
            self.metrics.slow_consumers.labels(self.name).inc()
            conn.sink.close(*SLOW_CONSUMER_CLOSE)
        return result

    # -- $disconnect ----------------------------------------------------------------------

    async def _run_disconnect(
        self,
        conn: Connection,
        facts: ConnectionFacts,
        code: int,
        reason: str,
    ) -> None:
        extra = {"api": self.name, "connection_id": conn.id}
        log.debug("disconnected %s %s", code, reason, extra=extra)
        route = self.routes.get("$disconnect")
        if route is None:
            return
        request_id = self.new_id()
        event = disconnect_event(
            self.api,
            facts,
            status_code=code,
            reason=reason,
            request_id=request_id,
            now_ms=self.node.now_ms(),
            authorizer=conn.authorizer,
        )
        # §3.4: best effort; the result is ignored and failures are only logged.
        with contextlib.suppress(InvocationError, InvocationTimeout):
            await self._invoke(
                route.integration,
                route.key,
                event,
                request_id,
                route.timeout_s,
                {**extra, "request_id": request_id},
            )

    # -- shared ---------------------------------------------------------------------------

    async def _invoke(
        self,
        integration: Integration,
        route: str,
        event: dict[str, Any],
        request_id: str,
        timeout_s: float,
        extra: dict[str, Any],
    ) -> Any:
        started = time.monotonic()
        try:
            return await integration.invoke(event, Invocation(request_id, timeout_s))
        except InvocationTimeout as exc:
            extra = {**extra, "route": route, "request_id": request_id}
            self.metrics.handler_errors.labels(self.name, route, "timeout").inc()
            log.error("handler %s timed out: %s", integration.function_name, exc, extra=extra)
            raise
        except InvocationError as exc:
            extra = {**extra, "route": route, "request_id": request_id}
            self.metrics.handler_errors.labels(self.name, route, "error").inc()
            if exc.error_message == "Unauthorized" and route == "$authorizer":
                log.info("authorizer said Unauthorized", extra=extra)
            else:
                log.error(
                    "handler %s failed: %s: %s\n%s",
                    integration.function_name,
                    exc.error_type,
                    exc.error_message,
                    exc.stack.rstrip(),
                    extra=extra,
                )
            raise
        finally:
            histogram = self._handler_seconds.get(route)
            if histogram is None:
                histogram = self.metrics.handler_seconds.labels(self.name, route)
                self._handler_seconds[route] = histogram
            histogram.observe(time.monotonic() - started)

    def sweep(self, now_ms: int) -> None:
        """Close idle and over-age connections (§6: both close with 1001 "Going away").

        Called about once a second by the gateway: one scan per node, no per-connection timers.
        """
        limits = self.settings.limits
        idle_ms = limits.idle_timeout_s * 1000
        max_ms = limits.max_connection_duration_s * 1000
        for conn in self.node.connections(self.name):
            if conn.last_active_ms == 0:
                continue  # still connecting
            if now_ms - conn.last_active_ms >= idle_ms or now_ms - conn.connected_at_ms >= max_ms:
                conn.sink.close(wire.CLOSE_GOING_AWAY, wire.REASON_GOING_AWAY)


class _Unprepared:
    """Sink of a connection whose WebSocket is not prepared yet (during ``$connect``).

    Nothing is written to a CONNECTING connection (``Connection.send_frame`` checks the state).
    """

    __slots__ = ()

    def write_frame(self, frame: bytes) -> None:
        raise RuntimeError("write to a connection that is still connecting")

    def buffered_bytes(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        return None


def _subprotocol(result: dict[str, Any]) -> str | None:
    """``Sec-WebSocket-Protocol`` from the ``$connect`` response headers (§3.3)."""
    for key in ("headers", "multiValueHeaders"):
        headers = result.get(key)
        if isinstance(headers, dict):
            for name, value in headers.items():
                if str(name).lower() == "sec-websocket-protocol":
                    if isinstance(value, list):
                        value = value[0] if value else None
                    return str(value).strip() if value else None
    return None


def _json_response(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)
