"""A configured ``type: websocket`` API serving its open connections (apigw spec §3.1, §3.4, §6,
§7).

``ApiRuntime`` holds the API's routes and integrations: each text message an open connection
(``websocket/connection.py``) hands it is routed and its integration invoked, failures become
the frames AWS sends, and ``$disconnect`` runs once the connection has ended. Admission
(authorizer, ``$connect``) is in ``handshake.py``; event shapes and routing come from the pure
modules ``events`` and ``routing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sockway.core.connection import Connection, SendResult
from sockway.core.ids import ConnectionId
from sockway.core.node import Node
from sockway.observability.metrics import Metrics
from sockway.observability.tap import Activity, Tap, invocation
from sockway.runtimes import output
from sockway.runtimes.base import Integration, Invocation, InvocationError, InvocationTimeout
from sockway.transport.handler import Sink, until_closed
from sockway.websocket import wire
from sockway.websocket.events import ApiIdentity, ConnectionFacts, disconnect_event, message_event
from sockway.websocket.routing import SelectionExpression, select_route
from sockway.websocket.settings import WebSocketApi

log = logging.getLogger("sockway.apigw")


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    integration: Integration
    route_response: bool
    timeout_s: float


@dataclass
class ApiRuntime:
    """A configured websocket API, ready to serve."""

    settings: WebSocketApi
    node: Node
    metrics: Metrics
    new_id: Callable[[], str]
    routes: dict[str, Route]
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
    tap: Tap = field(default_factory=Tap)  # access log and console (observability/tap.py)

    def __post_init__(self) -> None:
        self.expression = SelectionExpression.compile(self.settings.route_selection_expression)
        self.route_keys = frozenset(self.routes)
        # Per-message counters bound once: ``labels()`` builds a key each call (~1 µs with
        # prometheus_client's lock, three times per two-way message).
        self.messages_in = self.metrics.messages_in.labels(self.name)
        self._messages_out = self.metrics.messages_out.labels(self.name)
        self._handler_seconds: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def api(self) -> ApiIdentity:
        assert self.identity is not None, "ApiRuntime used before the gateway started"
        return self.identity

    def new_connection(
        self, facts: ConnectionFacts, authorizer: dict[str, Any] | None
    ) -> Connection:
        """The connection being admitted (CONNECTING, nothing can be written to it yet)."""
        return Connection(
            id=ConnectionId(facts.connection_id),
            api_name=self.name,
            sink=_Unprepared(),
            connected_at_ms=facts.connected_at_ms,
            source_ip=facts.source_ip,
            user_agent=facts.user_agent,
            outbox_max_bytes=self.settings.limits.outbox_max_bytes,
            authorizer=authorizer,
        )

    def opened(self, conn: Connection, sink: Sink) -> None:
        conn.sink = sink
        self.node.open(conn)
        self.open_count += 1
        self.metrics.connects.labels(self.name).inc()
        self.metrics.connections.labels(self.name).inc()
        log.debug("connected", extra={"api": self.name, "connection_id": conn.id})

    def ended(self, conn: Connection, facts: ConnectionFacts, cause: tuple[int, str]) -> None:
        """Out of the node, then ``$disconnect`` on a task of its own (drained on stop)."""
        self.open_count -= 1
        self.node.remove(conn)
        self.metrics.connections.labels(self.name).dec()
        task = asyncio.get_running_loop().create_task(self._run_disconnect(conn, facts, *cause))
        self.disconnects.add(task)
        task.add_done_callback(self.disconnects.discard)

    async def drained(self) -> None:
        """Every connection has closed and run its ``$disconnect`` (polled: used only while
        the gateway drains)."""
        await until_closed(lambda: self.open_count or self.handshakes or self.disconnects)

    # -- messages -------------------------------------------------------------------------

    async def dispatch(
        self, conn: Connection, facts: ConnectionFacts, body: str, received_ms: int
    ) -> None:
        request_id = self.new_id()
        extra = {"api": self.name, "connection_id": conn.id, "request_id": request_id}
        route_key = select_route(self.expression, body, self.route_keys)
        if route_key is None:
            self._message(conn, None, 403, None, request_id, body)
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
            now_ms=received_ms,  # requestTimeEpoch: when the message arrived
            authorizer=conn.authorizer,
        )
        started = time.monotonic()
        try:
            result = await self.invoke(
                route.integration, route_key, event, request_id, route.timeout_s, extra
            )
        except InvocationTimeout:
            self._message(conn, route_key, 504, started, request_id, body)
            self._send(conn, wire.timeout_frame(conn.id, request_id))
            return
        except InvocationError:
            self._message(conn, route_key, 500, started, request_id, body)
            self._send(conn, wire.internal_error_frame(conn.id, request_id))
            return
        self._message(conn, route_key, 200, started, request_id, body)
        if not route.route_response or result is None:
            return  # §3.1: one-way routes discard the result
        if isinstance(result, dict):
            out = result.get("body")
            if out is None:
                return  # §3.1 [unknown on AWS]: no body → send nothing
            if isinstance(out, str):
                try:
                    payload = out.encode()
                except UnicodeEncodeError:
                    # A lone surrogate has no UTF-8 form (a text frame must be UTF-8): what a
                    # worker reports as Runtime.MarshalError, an integration failure.
                    log.error(
                        "two-way route returned a body that is not valid Unicode "
                        "(a lone surrogate)",
                        extra={**extra, "route": route_key},
                    )
                    self._send(conn, wire.internal_error_frame(conn.id, request_id))
                    return
                self._send(conn, payload)
                return
        log.error(
            "two-way route returned a malformed proxy response (body must be a string)",
            extra={**extra, "route": route_key},
        )
        self._send(conn, wire.internal_error_frame(conn.id, request_id))

    def _message(
        self,
        conn: Connection,
        route_key: str | None,
        status: int,
        started: float | None,
        request_id: str,
        body: str,
    ) -> None:
        """Tell the tap of a routed message (an access-log MESSAGE line)."""
        if self.tap.active:
            self.tap.emit(
                Activity(
                    "message",
                    self.name,
                    connection_id=conn.id,
                    route_key=route_key,
                    status=status,
                    latency_ms=None if started is None else (time.monotonic() - started) * 1000,
                    request_id=request_id,
                    ip=conn.source_ip,
                    payload=body,
                )
            )

    def _send(self, conn: Connection, payload: bytes) -> SendResult:
        result = conn.send_text(payload, self.node.now_ms())
        if result is SendResult.SENT:
            self._messages_out.inc()
            if self.tap.detailed:
                self.tap.emit(
                    Activity("out", self.name, connection_id=conn.id, payload=payload.decode())
                )
        elif result is SendResult.OUTBOX_FULL and self.node.drop_slow(conn):
            self.metrics.slow_consumers.labels(self.name).inc()
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
        request_id = self.new_id()
        started = time.monotonic()
        try:
            if route is not None:
                await self._disconnect_handler(route, conn, facts, code, reason, request_id)
        finally:
            if self.tap.active:
                self.tap.emit(
                    Activity(
                        "disconnect",
                        self.name,
                        connection_id=conn.id,
                        route_key="$disconnect",
                        status=200,
                        latency_ms=(time.monotonic() - started) * 1000 if route else None,
                        request_id=request_id,
                        ip=conn.source_ip,
                        detail={"close_code": code, "close_reason": reason},
                    )
                )

    async def _disconnect_handler(
        self,
        route: Route,
        conn: Connection,
        facts: ConnectionFacts,
        code: int,
        reason: str,
        request_id: str,
    ) -> None:
        extra = {"api": self.name, "connection_id": conn.id}
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
            await self.invoke(
                route.integration,
                route.key,
                event,
                request_id,
                route.timeout_s,
                {**extra, "request_id": request_id},
            )

    # -- shared ---------------------------------------------------------------------------

    async def invoke(
        self,
        integration: Integration,
        route: str,
        event: dict[str, Any],
        request_id: str,
        timeout_s: float,
        extra: dict[str, Any],
    ) -> Any:
        started = time.monotonic()
        outcome, stack = "ok", ""
        # Always captured: print() gets Lambda's prefix even with no one watching.
        capture = output.capture(request_id)
        try:
            with capture as out:
                return await integration.invoke(event, Invocation(request_id, timeout_s))
        except InvocationTimeout as exc:
            outcome = "timeout"
            extra = {**extra, "route": route, "request_id": request_id}
            self.metrics.handler_errors.labels(self.name, route, "timeout").inc()
            log.error("handler %s timed out: %s", integration.function_name, exc, extra=extra)
            raise
        except InvocationError as exc:
            outcome, stack = "error", exc.stack
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
            if self.tap.detailed:
                self.tap.emit(
                    invocation(
                        self.name,
                        route,
                        function=integration.function_name,
                        request_id=request_id,
                        connection_id=extra.get("connection_id"),
                        duration_ms=(time.monotonic() - started) * 1000,
                        outcome=outcome,
                        lines=out.lines,
                        stack=stack,
                    )
                )

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

    def cut(self, code: int, reason: str) -> None:
        return None
