"""One open connection of a ``type: websocket`` API, on either transport: the
``MessageHandler`` (``transport/handler.py``) the handshake (``websocket/handshake.py``) gives
picows or aiohttp once ``$connect`` admitted it. Each text message goes to the API's runtime
(``websocket/runtime.py``) on a task of its own; a binary message closes with 1003, as on AWS
(apigw spec §6); how the connection ended is ``$disconnect``'s status (§3.4)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sockway.core.connection import Connection
from sockway.transport.eager import start_message
from sockway.transport.handler import Hold, Sink
from sockway.websocket import wire
from sockway.websocket.events import ConnectionFacts

if TYPE_CHECKING:
    from sockway.websocket.runtime import ApiRuntime


class ApiConnection:
    """One open connection of a websocket API, on either transport (``MessageHandler``):
    each text message dispatched (§3.1), binary data refused (§6), then ``$disconnect`` with
    how the connection ended (§3.4)."""

    __slots__ = ("_loop", "_runtime", "client_close", "conn", "facts", "sink")

    def __init__(self, runtime: ApiRuntime, conn: Connection, facts: ConnectionFacts) -> None:
        self._loop = asyncio.get_running_loop()  # once, not per message (a syscall on 3.11)
        self._runtime = runtime
        self.conn = conn
        self.facts = facts
        self.sink: Sink | None = None
        self.client_close: tuple[int, str] | None = None

    def opened(self, sink: Sink, hold: Hold) -> None:
        self.sink = sink
        self._runtime.opened(self.conn, sink)

    def message(self, data: str | bytes) -> asyncio.Task[None] | None:
        """Each text message runs on its own task, so one connection's messages run
        concurrently, as on AWS (up to ``max_inflight_messages``); started eagerly on 3.12+
        (``transport/eager.py``): ``None`` when it finished without suspending."""
        if isinstance(data, bytes):
            assert self.sink is not None
            self.sink.close(wire.CLOSE_UNSUPPORTED_DATA, wire.REASON_BINARY)  # §6: → 1003
            return None
        runtime = self._runtime
        conn = self.conn
        conn.last_active_ms = now_ms = runtime.node.now_ms()
        runtime.messages_in.inc()
        task = start_message(runtime.dispatch(conn, self.facts, data, now_ms), self._loop)
        if task is not None:
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
        self._runtime.ended(self.conn, self.facts, cause)
