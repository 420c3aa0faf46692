"""The AppSync Events realtime WebSocket ``{base_path}/event/realtime`` (spec §2).

Handshake (§2.1): the ``aws-appsync-event-ws`` subprotocol is selected when offered; connect
authorization comes from the ``header-<base64url JSON>`` subprotocol or, as native clients
send it, from the upgrade request's headers. A refused connect is answered after the upgrade
with ``connection_error`` (UnauthorizedException, non-retryable for Amplify) and a close.

Messages (§2.2): ``connection_init`` → ``connection_ack``; ``subscribe`` / ``unsubscribe`` /
``publish`` with their success and error replies; anything else gets an ``error`` frame and the
connection keeps working. Each message is handled in its own task so a slow handler never
holds up the others; ids are reserved before the first await so duplicates are refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from sockway.core.connection import Connection, SendResult
from sockway.events import wire
from sockway.events.auth import lower_headers
from sockway.events.connection import CLOSE_NORMAL, EventsConnection, EventsSession
from sockway.events.operations import Operation, Subscription, current_operation
from sockway.events.runtime import EventsRuntime
from sockway.events.wire import EventsError
from sockway.observability.tap import Activity
from sockway.transport.aiohttp_ws import (
    AiohttpSink,
    serve_aiohttp,
    version_refusal,
    websocket_response,
)
from sockway.transport.picows_ws import PicowsConnection, refuse_upgrade, start_websocket
from sockway.transport.upgrade_head import RequestHead

log = logging.getLogger("sockway.appsync")

_HIDDEN_HEADERS = frozenset({"cookie", "sec-websocket-protocol", "sec-websocket-key"})


def connect_headers(
    headers: Mapping[str, str], query: Mapping[str, str]
) -> tuple[dict[str, str], bool]:
    """(authorization headers, subprotocol offered) of an upgrade request (§2.1).

    Sources, first found wins: the ``header-`` subprotocol, the ``header`` query parameter,
    the upgrade request's own headers.
    """
    offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    for proto in offered:
        if proto.startswith(wire.HEADER_PREFIX):
            encoded = proto[len(wire.HEADER_PREFIX) :]
            try:
                decoded = orjson.loads(
                    base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
                )
            except (binascii.Error, ValueError):
                return {}, wire.SUBPROTOCOL in offered
            if isinstance(decoded, dict):
                return lower_headers(decoded), wire.SUBPROTOCOL in offered
            return {}, wire.SUBPROTOCOL in offered
    query_header = query.get("header")
    if query_header:
        # GraphQL-realtime style ``?header=<base64 JSON>&payload=e30=`` (some clients, §2.1).
        try:
            decoded = orjson.loads(base64.b64decode(query_header + "=" * (-len(query_header) % 4)))
        except (binascii.Error, ValueError):
            decoded = None
        return (lower_headers(decoded) if isinstance(decoded, dict) else {}), (
            wire.SUBPROTOCOL in offered
        )
    return lower_headers(dict(headers)), wire.SUBPROTOCOL in offered


def _upgrade_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upgrade request's headers as handlers see them (§6.2), lower-cased."""
    return {k: v for k, v in lower_headers(dict(headers)).items() if k not in _HIDDEN_HEADERS}


class RealtimeEndpoint:
    """The realtime path of one events API, on both transports (``EventsConnection``)."""

    def __init__(self, runtime: EventsRuntime) -> None:
        self.rt = runtime
        self.sessions: dict[Connection, EventsSession] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp's handler: an upgrade that followed other requests on its connection."""
        rt = self.rt
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.json_response({"message": "Upgrade Required"}, status=426)
        refused = version_refusal(request)
        if refused is not None:
            return refused
        if rt.draining:
            return web.json_response({"message": "Service Unavailable"}, status=503)
        auth_headers, offered = connect_headers(request.headers, request.query)
        limits = rt.settings.limits
        ws = websocket_response(
            (wire.SUBPROTOCOL,) if offered else (), limits.max_request_bytes + 1
        )
        try:
            await ws.prepare(request)
        except (ConnectionResetError, OSError):
            return ws
        peer = request.transport.get_extra_info("peername") if request.transport else None
        handler = EventsConnection(
            self,
            _upgrade_headers(request.headers),
            str(peer[0]) if peer else "127.0.0.1",
            request.headers.get("User-Agent"),
            auth_headers,
        )
        task = asyncio.current_task()
        assert task is not None
        rt.sessions.add(task)
        try:
            sink = AiohttpSink(ws, request.transport)
            await serve_aiohttp(ws, sink, handler, limits.max_inflight_messages, rt.inflight)
        finally:
            rt.sessions.discard(task)
        return ws

    def upgrade(self, transport: asyncio.Transport, head: RequestHead, raw: bytes) -> None:
        """``UpgradeHandler`` of the realtime path (``transport/sniffer.py``): served by picows;
        the connect authorization runs after the handshake, as with aiohttp (§2.1)."""
        rt = self.rt
        if rt.draining:
            refuse_upgrade(transport, 503, {"message": "Service Unavailable"})
            return
        headers = CIMultiDict(head.headers)
        query = URL.build(query_string=head.query_string, encoded=True).query
        auth_headers, offered = connect_headers(headers, query)
        peer = transport.get_extra_info("peername")
        source_ip = str(peer[0]) if peer else "127.0.0.1"
        limits = rt.settings.limits
        handler = EventsConnection(
            self, _upgrade_headers(headers), source_ip, headers.get("User-Agent"), auth_headers
        )
        listener = PicowsConnection(
            handler, limits.max_inflight_messages, limits.max_request_bytes, rt.inflight
        )
        subprotocol = wire.SUBPROTOCOL if offered else None
        try:
            start_websocket(transport, raw, listener, subprotocol, limits.max_request_bytes)
        except Exception:  # e.g. the transport was closed meanwhile
            log.exception("handshake failed", extra={"api": rt.name})
            transport.abort()

    def forget(self, session: EventsSession) -> None:
        rt = self.rt
        for sub in session.subscriptions.values():
            rt.remove_subscription(sub)
        session.subscriptions.clear()
        self.sessions.pop(session.conn, None)
        rt.node.remove(session.conn)
        rt.metrics.connections.labels(rt.name).dec()

    def send(self, session: EventsSession, frame: bytes) -> None:
        result = session.conn.send_text(frame, self.rt.node.now_ms())
        if result is SendResult.SENT:
            self.rt.metrics.messages_out.labels(self.rt.name).inc()
            tap = self.rt.tap
            if tap.detailed and frame != wire.KA:
                tap.emit(
                    Activity(
                        "out", self.rt.name, connection_id=session.conn.id, payload=frame.decode()
                    )
                )
        elif result is SendResult.OUTBOX_FULL and self.rt.node.drop_slow(session.conn):
            self.rt.metrics.slow_consumers.labels(self.rt.name).inc()

    # -- messages -------------------------------------------------------------------------

    async def dispatch(self, session: EventsSession, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            err = EventsError(wire.INVALID_INPUT, "Message is not a JSON object")
            self.send(session, wire.failure("error", None, err))
            return
        kind = message.get("type")
        raw_id = message.get("id")
        shown_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 256 else None
        if kind == "connection_init":
            self._ack(session)
            return
        if kind not in ("subscribe", "unsubscribe", "publish"):
            err = EventsError(wire.UNSUPPORTED, f"Unsupported operation type: {kind}")
            self.send(session, wire.failure("error", shown_id, err))
            return
        if not wire.valid_operation_id(raw_id):
            err = EventsError(wire.BAD_REQUEST, "id must match ^[a-zA-Z0-9-_+]{1,128}$")
            self.send(session, wire.failure(f"{kind}_error", shown_id, err))
            return
        op_id = str(raw_id)
        started, status = time.monotonic(), 200
        current_operation.set((session.conn.id, op_id))  # this task's (runs per message)
        try:
            if kind == "subscribe":
                await self._subscribe(session, op_id, message)
            elif kind == "unsubscribe":
                self._unsubscribe(session, op_id)
            else:
                await self._publish(session, op_id, message)
        except EventsError as exc:
            status = exc.status if exc.status >= 400 else 400
            self.send(session, wire.failure(f"{kind}_error", op_id, exc))
        except Exception:  # our bug: log it, answer, keep the connection (DESIGN habit 3)
            status = 500
            log.exception("%s %s failed", kind, op_id, extra={"api": self.rt.name})
            self.send(session, wire.failure(f"{kind}_error", op_id, wire.internal_failure()))
        tap = self.rt.tap
        if tap.active:
            tap.emit(
                Activity(
                    "message",
                    self.rt.name,
                    connection_id=session.conn.id,
                    route_key=kind,
                    status=status,
                    latency_ms=(time.monotonic() - started) * 1000,
                    request_id=op_id,
                    ip=session.source_ip,
                    payload=text,
                    channel=channel if isinstance(channel := message.get("channel"), str) else None,
                )
            )

    def _ack(self, session: EventsSession) -> None:
        self.send(session, wire.connection_ack(self.rt.settings.limits.connection_timeout_ms))
        session.acked = True
        session.last_ka_ms = self.rt.node.now_ms()
        self.send(session, wire.KA)

    def _operation(self, session: EventsSession, message: dict[str, Any], body: bytes) -> Operation:
        raw_auth = message.get("authorization")
        auth = lower_headers(raw_auth) if isinstance(raw_auth, dict) else {}
        return Operation(
            auth_headers=auth,
            request_headers={**session.upgrade_headers, **auth},
            signed_body=body,
            source_ip=session.source_ip,
        )

    async def _subscribe(self, session: EventsSession, op_id: str, message: dict[str, Any]) -> None:
        rt = self.rt
        if op_id in session.subscriptions or op_id in session.pending:
            raise EventsError(wire.DUPLICATED, f"Duplicate subscription id {op_id}")
        taken = len(session.subscriptions) + len(session.pending)
        if taken >= rt.settings.limits.max_subscriptions_per_connection:
            raise EventsError(wire.MAX_SUBSCRIPTIONS, "Maximum number of subscriptions reached")
        raw_channel = message.get("channel")
        channel = rt.channel(raw_channel, subscribe=True)
        # AWS_IAM signs the virtual body {"channel": <as sent>} (spec §3.4).
        body = orjson.dumps({"channel": raw_channel})
        session.pending.add(op_id)
        try:
            await rt.authorize_subscribe(channel, self._operation(session, message, body))
            # Publications of other nodes reach this node once the broker confirmed the key;
            # the subscription starts then, and subscribe_success goes out before any event
            # (during an outage at once: local events only).
            async with rt.peers.subscribing(channel):
                if session.conn.state.value != "open":
                    return
                sub = Subscription(session.conn, op_id, channel, wire.data_frame_head(op_id))
                session.subscriptions[op_id] = sub
                rt.add_subscription(sub)
                self.send(session, wire.success("subscribe_success", op_id))
        finally:
            session.pending.discard(op_id)

    def _unsubscribe(self, session: EventsSession, op_id: str) -> None:
        sub = session.subscriptions.pop(op_id, None)
        if sub is None:
            raise EventsError(wire.UNKNOWN_OPERATION, f"Unknown operation id {op_id}")
        self.rt.remove_subscription(sub)
        self.send(session, wire.success("unsubscribe_success", op_id))

    async def _publish(self, session: EventsSession, op_id: str, message: dict[str, Any]) -> None:
        second = self.rt.node.now_ms() // 1000
        if second != session.publish_window_s:
            session.publish_window_s, session.publishes_in_window = second, 0
        session.publishes_in_window += 1
        limit = self.rt.settings.limits.max_publishes_per_second
        if session.publishes_in_window > limit:
            raise EventsError(wire.LIMIT_EXCEEDED, f"Rate exceeded: {limit} publishes per second")
        raw_channel, raw_events = message.get("channel"), message.get("events")
        # The virtual body AWS_IAM signs: JSON.stringify({channel, events}) (spec §3.4).
        body = orjson.dumps({"channel": raw_channel, "events": raw_events})
        op = self._operation(session, message, body)
        outcome = await self.rt.publish(raw_channel, raw_events, op)
        result = wire.publish_result(op_id, outcome.successful, outcome.failed)
        self.send(session, orjson.dumps(result))

    # -- timers ---------------------------------------------------------------------------

    def sweep(self, now_ms: int) -> None:
        """``ka`` every ``keep_alive_interval_s`` after the ack; close at the maximum duration."""
        limits = self.rt.settings.limits
        ka_ms = limits.keep_alive_interval_s * 1000
        max_ms = limits.max_connection_duration_s * 1000
        for session in list(self.sessions.values()):
            if now_ms - session.conn.connected_at_ms >= max_ms:
                session.conn.sink.close(CLOSE_NORMAL, "Maximum connection duration reached")
                continue
            if session.acked and now_ms - session.last_ka_ms >= ka_ms:
                session.last_ka_ms = now_ms
                self.send(session, wire.KA)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            with contextlib.suppress(Exception):
                session.conn.sink.close(1001, "Going away")
