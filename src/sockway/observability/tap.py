"""The gateway's activity tap: one door-agnostic hook every front door reports to.

A front door tells the ``Tap`` what happened — a connection admitted or refused, a message
routed, a message sent, a publication, a handler invocation, a connection ended — as an
``Activity``. Listeners (the access log, the live console) subscribe to it. The tap knows no
front door and no listener; a door never learns who listens.

Cost: with no listener, ``emit`` is one attribute test. Activities that carry payloads on the
fan-out path (``out``, ``publish``) are built only when a listener asked for payloads
(``Tap.payloads``), so the access log alone adds nothing per delivered frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("sockway.tap")

Kind = Literal["connect", "disconnect", "message", "out", "publish", "invoke"]

# API Gateway's ``$context.eventType`` for the kinds the access log writes (apigw spec §3).
EVENT_TYPES: dict[str, str] = {
    "connect": "CONNECT",
    "disconnect": "DISCONNECT",
    "message": "MESSAGE",
}


@dataclass(slots=True)
class Activity:
    """One thing that happened on a front door.

    ``status`` is the HTTP-style outcome API Gateway logs (200; 401/403 a refused handshake;
    403 no route; 500 handler error; 504 timeout). ``latency_ms`` is the integration latency
    (the handler's run time) when a handler ran, else None.
    """

    kind: Kind
    api: str
    connection_id: str | None = None
    route_key: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    request_id: str | None = None
    ip: str | None = None
    payload: str | None = None
    channel: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    time_s: float = field(default_factory=time.time)


Listener = Callable[[Activity], None]


class Tap:
    """Fan-in of activities from every front door, fan-out to the listeners."""

    def __init__(self) -> None:
        self._listeners: list[tuple[Listener, bool]] = []
        self.active = False  # any listener at all
        self.payloads = False  # a listener wants message payloads (out, publish)

    def subscribe(self, listener: Listener, *, payloads: bool = False) -> Callable[[], None]:
        """Call ``listener`` for every activity; returns the unsubscribe function.

        A listener must not block and must not raise (it runs inside the door's code path);
        an exception it raises is swallowed by ``emit`` so a console bug never breaks a door.
        """
        entry = (listener, payloads)
        self._listeners.append(entry)
        self._update()

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._update()

        return unsubscribe

    def _update(self) -> None:
        self.active = bool(self._listeners)
        self.payloads = any(p for _, p in self._listeners)

    def emit(self, activity: Activity) -> None:
        for listener, payloads in tuple(self._listeners):
            if activity.kind in ("out", "publish") and not payloads:
                continue
            try:
                listener(activity)
            except Exception:  # a listener bug must not break a front door: logged, not raised
                log.exception("activity listener failed")


def invocation(
    api: str,
    route_key: str,
    *,
    function: str,
    request_id: str,
    connection_id: str | None,
    duration_ms: float,
    outcome: str,
    lines: list[str],
    stack: str = "",
) -> Activity:
    """A handler invocation as the console shows it: Lambda's START / END / REPORT around
    what the handler printed or logged, and the traceback of a failure. ``outcome`` is
    ``ok``, ``error`` or ``timeout``."""
    log_lines = [f"START RequestId: {request_id} Version: $LATEST", *lines]
    if stack:
        log_lines.append(stack.rstrip())
    log_lines.append(f"END RequestId: {request_id}")
    log_lines.append(f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms")
    return Activity(
        "invoke",
        api,
        connection_id=connection_id,
        route_key=route_key,
        latency_ms=duration_ms,
        request_id=request_id,
        detail={"function": function, "outcome": outcome, "logs": log_lines},
    )
