"""Access logs like API Gateway's WebSocket access logging (one line per connect, disconnect,
refused handshake and routed message), for every front door.

The line is a template over API Gateway's ``$context`` variables (the names of the
"$context variables for WebSocket APIs" table): ``$context.connectionId``,
``$context.eventType`` (CONNECT, MESSAGE, DISCONNECT), ``$context.routeKey``,
``$context.status``, ``$context.integrationLatency`` (ms), ``$context.requestId``,
``$context.identity.sourceIp``, ``$context.identity.userAgent``, ``$context.requestTime``
(CLF, as API Gateway writes it), ``$context.requestTimeEpoch`` (ms), ``$context.apiName``,
``$context.disconnectStatusCode``, ``$context.disconnectReason``. A variable without a value
is written ``-``, as API Gateway does. ``text`` and ``json`` are presets; any other string is
the user's own template. In a template that starts with ``{`` values are JSON-escaped, so a
``"$context.x"`` stays a valid JSON string.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

import orjson

from sockway.observability.tap import EVENT_TYPES, Activity

ACCESS_LOGGER = "sockway.access"

TEXT_FORMAT = (
    "$context.requestTime $context.identity.sourceIp $context.apiName $context.eventType "
    "$context.routeKey $context.connectionId $context.status $context.integrationLatency "
    "$context.requestId"
)
JSON_FORMAT = (
    '{"requestTime":"$context.requestTime","requestTimeEpoch":$context.requestTimeEpoch,'
    '"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
    '"api":"$context.apiName","eventType":"$context.eventType","routeKey":"$context.routeKey",'
    '"status":"$context.status","connectionId":"$context.connectionId",'
    '"integrationLatency":"$context.integrationLatency",'
    '"disconnectStatusCode":"$context.disconnectStatusCode",'
    '"disconnectReason":"$context.disconnectReason"}'
)
PRESETS = {"text": TEXT_FORMAT, "json": JSON_FORMAT}

VARIABLES = (
    "connectionId",
    "eventType",
    "routeKey",
    "status",
    "integrationLatency",
    "requestId",
    "identity.sourceIp",
    "identity.userAgent",
    "requestTime",
    "requestTimeEpoch",
    "apiName",
    "disconnectStatusCode",
    "disconnectReason",
)
# Longest first, so ``requestTimeEpoch`` is not read as ``requestTime`` + "Epoch".
_VARIABLE = re.compile(
    r"\$context\.(" + "|".join(re.escape(v) for v in sorted(VARIABLES, key=len, reverse=True)) + ")"
)


def unknown_variables(template: str) -> list[str]:
    """``$context.x`` names in ``template`` this log does not know (a config error)."""
    known = set(VARIABLES)
    found = re.findall(r"\$context\.([A-Za-z][A-Za-z.]*[A-Za-z])", template)
    return [f"$context.{name}" for name in found if name not in known]


def _clf(epoch_s: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_s))


def _values(activity: Activity) -> dict[str, str]:
    latency = activity.latency_ms
    detail = activity.detail
    code = detail.get("close_code")
    return {
        "connectionId": activity.connection_id or "-",
        "eventType": EVENT_TYPES.get(activity.kind, activity.kind.upper()),
        "routeKey": activity.route_key or "-",
        "status": str(activity.status) if activity.status is not None else "-",
        "integrationLatency": str(round(latency)) if latency is not None else "-",
        "requestId": activity.request_id or "-",
        "identity.sourceIp": activity.ip or "-",
        "identity.userAgent": str(detail.get("user_agent") or "-"),
        "requestTime": _clf(activity.time_s),
        "requestTimeEpoch": str(int(activity.time_s * 1000)),
        "apiName": activity.api,
        "disconnectStatusCode": str(code) if code is not None else "-",
        "disconnectReason": str(detail.get("close_reason") or "-"),
    }


def compile_format(fmt: str) -> Callable[[Activity], str]:
    """The line renderer of a preset name (``text``, ``json``) or a ``$context`` template."""
    template = PRESETS.get(fmt, fmt)
    as_json = template.lstrip().startswith("{")

    def render(activity: Activity) -> str:
        values = _values(activity)
        if as_json:
            return _VARIABLE.sub(lambda m: orjson.dumps(values[m[1]]).decode()[1:-1], template)
        return _VARIABLE.sub(lambda m: values[m[1]], template)

    return render


class AccessLog:
    """A ``Tap`` listener writing one access-log line per connect, disconnect, refused
    handshake and routed message to the ``sockway.access`` logger (INFO)."""

    def __init__(self, fmt: str, logger: logging.Logger | None = None) -> None:
        self._render = compile_format(fmt)
        self._log = logger or logging.getLogger(ACCESS_LOGGER)

    def __call__(self, activity: Activity) -> None:
        if activity.kind in EVENT_TYPES and self._log.isEnabledFor(logging.INFO):
            self._log.info(self._render(activity))
