"""One Pusher socket, on either transport: the ``MessageHandler`` the front door
(``pusher/door.py``) gives picows or aiohttp for ``/app/{key}``: the quota check, then each
frame applied by ``pusher/session.py`` (pusher spec §1), the connect and disconnect bookkeeping,
and the console's activity lines. ``UnknownApp`` answers a key of no app (spec §1.4)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

import orjson

from sockway.core.connection import Connection
from sockway.core.frames import encode_text_frame
from sockway.core.ids import ConnectionId
from sockway.observability.tap import Activity, Tap
from sockway.pusher import wire
from sockway.pusher.session import handle_frame
from sockway.pusher.state import PusherSocket
from sockway.transport.eager import start_message
from sockway.transport.handler import Hold, Sink

if TYPE_CHECKING:
    from sockway.pusher.door import PusherFrontDoor

log = logging.getLogger("sockway.pusher")


class PusherConnection:
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
            refusal = await self._door.refusal()
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


class UnknownApp:
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
