"""One AppSync Events realtime connection, on either transport: its protocol state
(``EventsSession``) and the ``MessageHandler`` the realtime endpoint (``events/realtime.py``)
gives picows or aiohttp: the connect authorization holds every message (spec §2.1), then each
message runs on its own task (§2.2); connects and disconnects are counted and shown in the
console."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sockway.core.connection import Connection
from sockway.core.frames import encode_text_frame
from sockway.core.ids import ConnectionId
from sockway.events import wire
from sockway.events.auth import CONNECT, AuthRequest
from sockway.events.operations import Subscription
from sockway.events.wire import EventsError
from sockway.observability.tap import Activity
from sockway.transport.eager import start_message
from sockway.transport.handler import Hold, Sink

if TYPE_CHECKING:
    from sockway.events.realtime import RealtimeEndpoint

CLOSE_NORMAL = 1000


@dataclass(eq=False)
class EventsSession:
    """Per-connection state of the realtime protocol."""

    conn: Connection
    upgrade_headers: dict[str, str]
    source_ip: str
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)  # subscribe ids being authorized
    acked: bool = False
    last_ka_ms: int = 0
    publish_window_s: int = 0  # the second being counted, and its publish requests
    publishes_in_window: int = 0


class EventsConnection:
    """One realtime connection, on either transport (``MessageHandler``): the connect
    authorization holds every message (§2.1), then each runs on its own task (§2.2)."""

    __slots__ = (
        "_auth",
        "_client_close",
        "_endpoint",
        "_source_ip",
        "_upgrade_headers",
        "_user_agent",
        "admitted",
        "gone",
        "session",
    )

    def __init__(
        self,
        endpoint: RealtimeEndpoint,
        upgrade_headers: dict[str, str],
        source_ip: str,
        user_agent: str | None,
        auth: dict[str, str],
    ) -> None:
        self._endpoint = endpoint
        self._upgrade_headers = upgrade_headers
        self._source_ip = source_ip
        self._user_agent = user_agent
        self._auth = auth
        self.session: EventsSession | None = None
        self.admitted = False
        self.gone = False
        self._client_close: tuple[int, str] | None = None

    def opened(self, sink: Sink, hold: Hold) -> None:
        rt = self._endpoint.rt
        conn = Connection(
            id=ConnectionId(rt.new_id()),
            api_name=rt.name,
            sink=sink,
            connected_at_ms=rt.node.now_ms(),
            source_ip=self._source_ip,
            user_agent=self._user_agent,
            outbox_max_bytes=rt.settings.limits.outbox_max_bytes,
        )
        self.session = EventsSession(conn, self._upgrade_headers, self._source_ip)
        rt.open_count += 1
        task = asyncio.get_running_loop().create_task(self._admit(self.session, sink))
        rt.sessions.add(task)
        task.add_done_callback(rt.sessions.discard)
        hold(task)

    async def _admit(self, session: EventsSession, sink: Sink) -> None:
        rt = self._endpoint.rt
        started = time.monotonic()
        try:
            await rt.auth.authorize(
                AuthRequest(CONNECT, None, self._auth, b"{}", session.source_ip),
                rt.settings.connect_modes(),
            )
        except EventsError as exc:
            rt.metrics.connect_rejects.labels(rt.name, "401").inc()
            self._activity("connect", session.conn, 401, started)
            sink.write_frame(encode_text_frame(wire.connection_error(exc)))
            sink.close(CLOSE_NORMAL, "")
            return
        if self.gone:
            return
        conn = session.conn
        rt.node.add(conn)
        rt.node.open(conn)
        self._endpoint.sessions[conn] = session
        rt.metrics.connects.labels(rt.name).inc()
        rt.metrics.connections.labels(rt.name).inc()
        self.admitted = True
        self._activity("connect", conn, 200, started)

    def _activity(
        self,
        kind: Literal["connect", "disconnect"],
        conn: Connection,
        status: int,
        started: float | None,
        close: tuple[int, str] | None = None,
    ) -> None:
        tap = self._endpoint.rt.tap
        if tap.active:
            detail: dict[str, Any] = {"user_agent": self._user_agent}
            if close is not None:
                detail.update(close_code=close[0], close_reason=close[1])
            tap.emit(
                Activity(
                    kind,
                    conn.api_name,
                    connection_id=conn.id,
                    route_key=f"${kind}",
                    status=status,
                    latency_ms=None if started is None else (time.monotonic() - started) * 1000,
                    ip=self._source_ip,
                    detail=detail,
                )
            )

    def message(self, data: str | bytes) -> asyncio.Task[None] | None:
        session = self.session
        if not self.admitted or session is None:
            return None  # refused: closing
        endpoint = self._endpoint
        if isinstance(data, bytes):
            err = EventsError(wire.INVALID_INPUT, "Binary frames are not supported")
            endpoint.send(session, wire.failure("error", None, err))
            return None
        rt = endpoint.rt
        rt.metrics.messages_in.labels(rt.name).inc()
        task = start_message(endpoint.dispatch(session, data))  # eager on 3.12+
        if task is not None:
            rt.inflight.add(task)
        return task

    def client_closed(self, code: int, reason: str) -> None:
        self._client_close = (code, reason)

    def closed(self, failure: tuple[int, str] | None) -> None:
        self.gone = True
        self._endpoint.rt.open_count -= 1
        if self.admitted and self.session is not None:
            self._endpoint.forget(self.session)
            close = failure or self._client_close or (1006, "")
            self._activity("disconnect", self.session.conn, 200, None, close)
