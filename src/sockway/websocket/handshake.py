"""How a ``type: websocket`` API admits a connection (apigw spec §3.2, §3.3, §5), on either
transport.

A connection whose first request is the upgrade arrives through the listener's sniffer
(``upgrade``) and, once ``$connect`` accepted it, is served by picows
(``transport/picows_ws.py``); an upgrade that follows other requests on a keep-alive connection
reaches aiohttp's handler ``handle_upgrade``. Both run the same admission (``_admit``: the
REQUEST authorizer, then ``$connect``) and hand the accepted connection to the same connection
logic (``connection.ApiConnection``). A refused upgrade is an HTTP answer, as on AWS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from sockway.core.connection import Connection
from sockway.core.ids import ConnectionId
from sockway.observability.tap import Activity
from sockway.runtimes.base import Integration, InvocationError, InvocationTimeout
from sockway.transport.aiohttp_ws import (
    AiohttpSink,
    serve_aiohttp,
    version_refusal,
    websocket_response,
)
from sockway.transport.picows_ws import PicowsConnection, refuse_upgrade, start_websocket
from sockway.transport.upgrade_head import RequestHead
from sockway.websocket.authorizer import decide, identity_present
from sockway.websocket.connection import ApiConnection
from sockway.websocket.events import (
    ConnectionFacts,
    UpgradeRequest,
    authorizer_event,
    connect_event,
)
from sockway.websocket.runtime import ApiRuntime
from sockway.websocket.settings import AuthorizerSpec

log = logging.getLogger("sockway.apigw")


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


class Handshakes:
    """The upgrades of one websocket API: admission, then the transport's handshake."""

    def __init__(self, runtime: ApiRuntime, authorizer: Authorizer | None) -> None:
        self.runtime = runtime
        self.authorizer = authorizer

    # The fast path: the sniffer's upgrades, served by picows.

    def upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        """``UpgradeHandler`` for ``GET /{stage}`` (``transport/sniffer.py``): run the admission
        and answer the handshake; reading on ``transport`` is paused until then."""
        runtime = self.runtime
        task = asyncio.get_running_loop().create_task(self._upgrade(transport, head, raw))
        runtime.handshakes.add(task)
        task.add_done_callback(runtime.handshakes.discard)

    async def _upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        runtime = self.runtime
        facts: ConnectionFacts | None = None
        try:
            query = tuple(URL.build(query_string=head.query_string, encoded=True).query.items())
            facts, upgrade = self._describe(
                head.headers, query, transport, head.header("User-Agent")
            )
            if runtime.draining:
                self._connect_activity(facts, 503, None, None)
                _refuse(transport, _Refusal(503, {"message": "Service Unavailable"}))
                return
            if head.header("Sec-WebSocket-Version") != "13" or not head.header("Sec-WebSocket-Key"):
                # RFC 6455 §4.2.2: answered before any handler runs, as aiohttp did
                self._connect_activity(facts, 400, None, None)
                _refuse(transport, _Refusal(400, {"message": "Bad Request"}))
                return
            admitted = await self._admit(facts, upgrade)
        except Exception:
            log.exception("upgrade failed", extra={"api": runtime.name})
            if facts is not None:
                self._connect_activity(facts, 500, None, None)
            _refuse(transport, _Refusal(500, {"message": "Internal server error"}))
            return
        if isinstance(admitted, _Refusal):
            _refuse(transport, admitted)
            return
        conn, protocol = admitted
        if runtime.draining:  # the gateway began to drain while $connect ran
            runtime.node.remove(conn)
            _refuse(transport, _Refusal(503, {"message": "Service Unavailable"}))
            return
        limits = runtime.settings.limits
        connection = ApiConnection(runtime, conn, facts)
        listener = PicowsConnection(
            connection, limits.max_inflight_messages, limits.max_message_bytes, runtime.inflight
        )
        try:
            start_websocket(transport, raw, listener, protocol, limits.max_frame_bytes)
        except Exception:  # e.g. the transport was closed meanwhile
            log.exception("handshake failed", extra={"api": runtime.name})
            transport.abort()
        if connection.sink is None:
            runtime.node.remove(conn)  # picows refused the handshake (400), or it failed

    # The aiohttp path: an upgrade that came after other requests on its connection.

    async def handle_upgrade(self, request: web.Request) -> web.StreamResponse:
        runtime = self.runtime
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _json_response(426, {"message": "Upgrade Required"})
        refused = version_refusal(request)  # before $connect runs (RFC 6455 §4.2.2)
        if refused is not None:
            return refused
        if runtime.draining:
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
        limits = runtime.settings.limits
        # aiohttp rejects a message of exactly max_msg_size; AWS accepts 128 KB exactly.
        # No compression: apigw spec §3.3, permessage-deflate is not negotiated.
        ws = websocket_response((protocol,) if protocol else (), limits.max_message_bytes + 1)
        try:
            await ws.prepare(request)
        except (ConnectionResetError, OSError):
            runtime.node.remove(conn)
            return ws
        sink = AiohttpSink(ws, request.transport)
        task = asyncio.current_task()
        assert task is not None
        runtime.sessions.add(task)
        try:
            await serve_aiohttp(
                ws,
                sink,
                ApiConnection(runtime, conn, facts),
                limits.max_inflight_messages,
                runtime.inflight,
                limits.max_frame_bytes,
            )
        finally:
            runtime.sessions.discard(task)
        return ws

    # -- admission ------------------------------------------------------------------------

    def _describe(
        self,
        headers: tuple[tuple[str, str], ...],
        query: tuple[tuple[str, str], ...],
        transport: asyncio.BaseTransport | None,
        user_agent: str | None,
    ) -> tuple[ConnectionFacts, UpgradeRequest]:
        runtime = self.runtime
        peer = transport.get_extra_info("peername") if transport else None
        sock = transport.get_extra_info("sockname") if transport else None
        secure = transport is not None and transport.get_extra_info("sslcontext") is not None
        source_ip = str(peer[0]) if peer else "127.0.0.1"
        facts = ConnectionFacts(
            ConnectionId(runtime.new_id()), runtime.node.now_ms(), source_ip, user_agent
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
        runtime = self.runtime
        extra = {"api": runtime.name, "connection_id": facts.connection_id}
        authorizer_ctx: dict[str, Any] | None = None
        started = time.monotonic()
        request_id = runtime.new_id()  # the $connect invocation's, as its access-log line shows
        if self.authorizer is not None:
            # A refusal's line is the $connect route's (the authorizer is that route's, and
            # API Gateway logs it so), with the request id the authorizer ran under: the id of
            # its START/END/REPORT lines, since $connect never runs.
            auth_request_id = runtime.new_id()
            status, authorizer_ctx = await self._authorize(
                self.authorizer, facts, upgrade, extra, auth_request_id
            )
            if status != 200:
                runtime.metrics.connect_rejects.labels(runtime.name, str(status)).inc()
                self._connect_activity(facts, status, started, auth_request_id)
                body = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Internal server error")
                return _Refusal(status, {"message": body})
        conn = runtime.new_connection(facts, authorizer_ctx)
        runtime.node.add(conn)  # CONNECTING: @connections answers 410 until $connect succeeds
        try:
            protocol, rejected = await self._run_connect(
                facts, upgrade, authorizer_ctx, extra, request_id
            )
        except BaseException:
            runtime.node.remove(conn)
            raise
        if rejected is not None:
            runtime.node.remove(conn)
            runtime.metrics.connect_rejects.labels(runtime.name, str(rejected)).inc()
            self._connect_activity(facts, rejected, started, request_id)
            return _Refusal(rejected, None)
        self._connect_activity(facts, 200, started, request_id, authorizer=authorizer_ctx)
        return conn, protocol

    def _connect_activity(
        self,
        facts: ConnectionFacts,
        status: int,
        started: float | None,
        request_id: str | None,
        authorizer: dict[str, Any] | None = None,
    ) -> None:
        """A CONNECT access-log line: admitted (200) or the refusal's HTTP status."""
        tap = self.runtime.tap
        if tap.active:
            tap.emit(
                Activity(
                    "connect",
                    self.runtime.name,
                    connection_id=facts.connection_id,
                    route_key="$connect",
                    status=status,
                    latency_ms=None if started is None else (time.monotonic() - started) * 1000,
                    request_id=request_id,
                    ip=facts.source_ip,
                    detail={"user_agent": facts.user_agent, "authorizer": authorizer},
                )
            )

    async def _authorize(
        self,
        authorizer: Authorizer,
        facts: ConnectionFacts,
        upgrade: UpgradeRequest,
        extra: dict[str, Any],
        request_id: str,
    ) -> tuple[int, dict[str, Any] | None]:
        runtime = self.runtime
        spec = authorizer.spec
        if not identity_present(
            spec.identity_source, upgrade.headers, upgrade.query, runtime.settings.stage_variables
        ):
            return 401, None  # §5.1: not invoked when an identity source is missing
        event = authorizer_event(
            runtime.api, facts, upgrade, request_id=request_id, now_ms=runtime.node.now_ms()
        )
        started = time.monotonic()
        try:
            result = await runtime.invoke(
                authorizer.integration,
                "$authorizer",
                event,
                request_id,
                authorizer.timeout_s,
                extra,
            )
        except InvocationError as exc:
            if exc.error_message == "Unauthorized":
                return 401, None
            return 500, None
        except InvocationTimeout:
            return 500, None
        decision = decide(
            result, runtime.api.connect_method_arn, int((time.monotonic() - started) * 1000)
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
        request_id: str,
    ) -> tuple[str | None, int | None]:
        """Run ``$connect``; return (subprotocol to select, rejection status or None)."""
        runtime = self.runtime
        route = runtime.routes.get("$connect")
        if route is None:
            return None, None  # §3.2: no $connect route → accept
        event = connect_event(
            runtime.api,
            facts,
            upgrade,
            request_id=request_id,
            now_ms=runtime.node.now_ms(),
            authorizer=authorizer_ctx,
        )
        try:
            result = await runtime.invoke(
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
