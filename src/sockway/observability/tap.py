"""The gateway's activity tap: one door-agnostic hook every front door reports to.

A front door tells the ``Tap`` what happened — a connection admitted or refused, a message
routed, a message sent, a publication, a handler invocation, a connection ended — as an
``Activity``. Listeners (the access log, the live console) subscribe to it. The tap knows no
front door and no listener; a door never learns who listens.

Cost: with no listener, a door's check is one attribute test (``Tap.active``). The detailed
activities — ``out`` (a frame sent), ``publish``, ``invoke`` (with the handler's output) — are
built only when a listener asked for them (``Tap.detailed``: the console), so the access log
alone adds nothing per delivered frame or invocation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("sockway.tap")
_DETAILED = frozenset({"out", "publish", "invoke"})

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
        self.detailed = False  # a listener wants out / publish / invoke activities

    def subscribe(self, listener: Listener, *, detailed: bool = False) -> Callable[[], None]:
        """Call ``listener`` for every activity; returns the unsubscribe function.

        A listener must not block and must not raise (it runs inside the door's code path);
        an exception it raises is swallowed by ``emit`` so a console bug never breaks a door.
        """
        entry = (listener, detailed)
        self._listeners.append(entry)
        self._update()

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)
                self._update()

        return unsubscribe

    def _update(self) -> None:
        self.active = bool(self._listeners)
        self.detailed = any(d for _, d in self._listeners)

    def emit(self, activity: Activity) -> None:
        for listener, detailed in tuple(self._listeners):
            if activity.kind in _DETAILED and not detailed:
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
    cause: str | None = None,
) -> Activity:
    """A handler invocation as the console shows it: ``outcome`` is ``ok``, ``error`` or
    ``timeout``; ``lines`` what the handler printed or logged; ``stack`` the traceback of a
    failure; ``cause`` the request id of the message that caused it (default: the
    invocation's own, as for API Gateway routes). ``log_lines`` adds Lambda's START / END /
    REPORT lines when it is shown (built then, not on every invocation)."""
    return Activity(
        "invoke",
        api,
        connection_id=connection_id,
        route_key=route_key,
        latency_ms=duration_ms,
        request_id=request_id,
        detail={
            "function": function,
            "outcome": outcome,
            "lines": lines,
            "stack": stack,
            "cause": cause or request_id,
        },
    )


def log_lines(activity: Activity) -> list[str]:
    """An invocation's log as CloudWatch shows a Lambda's: START, output, traceback, END,
    REPORT."""
    d, request_id = activity.detail, activity.request_id
    out = [f"START RequestId: {request_id} Version: $LATEST", *d.get("lines", ())]
    if d.get("stack"):
        out.append(str(d["stack"]).rstrip())
    out.append(f"END RequestId: {request_id}")
    out.append(f"REPORT RequestId: {request_id}\tDuration: {activity.latency_ms or 0:.2f} ms")
    return out
