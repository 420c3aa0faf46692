"""Lambda proxy events for WebSocket APIs, in AWS's modern format (apigw spec §1, §5.2).

Every event built here validates against aws-lambda-powertools' parser models
(``APIGatewayWebSocket{Connect,Message,Disconnect}EventModel``, spec §9.1): DISCONNECT always
carries ``headers``/``multiValueHeaders`` and a string ``disconnectReason``; every event carries
``isBase64Encoded: false`` and a real IP in ``identity.sourceIp``.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# §1.3: hop-by-hop headers API Gateway leaves out of the $connect proxy event (they stay in
# the authorizer event).
_NOT_IN_PROXY_EVENT = frozenset({"connection", "upgrade", "content-length"})


def clf_time(epoch_ms: int) -> str:
    """``requestTime``: ``dd/MMM/yyyy:HH:mm:ss +0000`` in UTC with English month (§1.1)."""
    return _clf_second(epoch_ms // 1000)


# Every event of the same second shares the text (bench, echo route: formatting it per message
# was 2.2 % of the gateway's samples).
@functools.lru_cache(maxsize=4)
def _clf_second(epoch_s: int) -> str:
    t = time.gmtime(epoch_s)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def trace_id(epoch_ms: int) -> str:
    """An X-Ray style ``X-Amzn-Trace-Id`` header value (§1.3)."""
    return f"Root=1-{epoch_ms // 1000:08x}-{os.urandom(12).hex()}"


@dataclass(frozen=True, slots=True)
class ApiIdentity:
    """What every event says about the API it came through."""

    api_id: str
    stage: str
    domain_name: str
    region: str
    account_id: str
    stage_variables: dict[str, str] = field(default_factory=dict)

    @property
    def connect_method_arn(self) -> str:
        return (
            f"arn:aws:execute-api:{self.region}:{self.account_id}:"
            f"{self.api_id}/{self.stage}/$connect"
        )


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """The client's upgrade GET, as the gateway received it."""

    headers: tuple[tuple[str, str], ...]  # original casing and order
    query: tuple[tuple[str, str], ...]
    source_ip: str
    user_agent: str | None
    local_port: int
    scheme: str  # "https" on TLS, else "http"


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """Per-connection values repeated in every event of the connection."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str | None


def _identity(conn: ConnectionFacts) -> dict[str, str]:
    ident = {"sourceIp": conn.source_ip}
    if conn.user_agent is not None:
        ident["userAgent"] = conn.user_agent
    return ident


def request_context(
    api: ApiIdentity,
    conn: ConnectionFacts,
    *,
    route_key: str,
    event_type: str,
    request_id: str,
    now_ms: int,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": clf_time(now_ms),
        "messageDirection": "IN",
        "stage": api.stage,
        "connectedAt": conn.connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": _identity(conn),
        "requestId": request_id,
        "domainName": api.domain_name,
        "connectionId": conn.connection_id,
        "apiId": api.api_id,
    }
    if authorizer is not None:
        ctx["authorizer"] = authorizer
    return ctx


def _single_and_multi(
    pairs: tuple[tuple[str, str], ...],
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """REST v1 convention: the single-value map holds the last value of a repeated key."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for k, v in pairs:
        single[k] = v
        multi.setdefault(k, []).append(v)
    return single, multi


def _gateway_headers(req: UpgradeRequest, now_ms: int) -> tuple[tuple[str, str], ...]:
    """The client's headers plus what API Gateway adds (§1.3)."""
    added: list[tuple[str, str]] = []
    forwarded = req.source_ip
    out: list[tuple[str, str]] = []
    for k, v in req.headers:
        low = k.lower()
        if low == "x-forwarded-for":
            forwarded = f"{v}, {req.source_ip}"
        elif low in ("x-forwarded-port", "x-forwarded-proto", "x-amzn-trace-id"):
            continue
        else:
            out.append((k, v))
    added.append(("X-Amzn-Trace-Id", trace_id(now_ms)))
    added.append(("X-Forwarded-For", forwarded))
    added.append(("X-Forwarded-Port", str(req.local_port)))
    added.append(("X-Forwarded-Proto", req.scheme))
    return tuple(out + added)


def connect_event(
    api: ApiIdentity,
    conn: ConnectionFacts,
    req: UpgradeRequest,
    *,
    request_id: str,
    now_ms: int,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``$connect`` proxy event (§1.7)."""
    headers = tuple(
        (k, v) for k, v in _gateway_headers(req, now_ms) if k.lower() not in _NOT_IN_PROXY_EVENT
    )
    single, multi = _single_and_multi(headers)
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    if req.query:
        qs, mqs = _single_and_multi(req.query)
        event["queryStringParameters"] = qs
        event["multiValueQueryStringParameters"] = mqs
    if api.stage_variables:
        event["stageVariables"] = dict(api.stage_variables)
    event["requestContext"] = request_context(
        api,
        conn,
        route_key="$connect",
        event_type="CONNECT",
        request_id=request_id,
        now_ms=now_ms,
        authorizer=authorizer,
    )
    event["isBase64Encoded"] = False
    return event


def authorizer_event(
    api: ApiIdentity,
    conn: ConnectionFacts,
    req: UpgradeRequest,
    *,
    request_id: str,
    now_ms: int,
) -> dict[str, Any]:
    """The REQUEST authorizer event for ``$connect`` (§5.2): all headers, empty maps not absent."""
    headers = _gateway_headers(req, now_ms)
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers += (("content-length", "0"),)  # AWS's captures always carry it (§5.2)
    single, multi = _single_and_multi(headers)
    qs, mqs = _single_and_multi(req.query)
    return {
        "type": "REQUEST",
        "methodArn": api.connect_method_arn,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": qs,
        "multiValueQueryStringParameters": mqs,
        "stageVariables": dict(api.stage_variables),
        "requestContext": request_context(
            api,
            conn,
            route_key="$connect",
            event_type="CONNECT",
            request_id=request_id,
            now_ms=now_ms,
            authorizer=None,
        ),
    }


def message_event(
    api: ApiIdentity,
    conn: ConnectionFacts,
    *,
    route_key: str,
    body: str,
    message_id: str,
    request_id: str,
    now_ms: int,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    """A MESSAGE event (§1.7): no headers, ``messageId`` present."""
    ctx = request_context(
        api,
        conn,
        route_key=route_key,
        event_type="MESSAGE",
        request_id=request_id,
        now_ms=now_ms,
        authorizer=authorizer,
    )
    ctx["messageId"] = message_id
    event: dict[str, Any] = {"requestContext": ctx, "body": body, "isBase64Encoded": False}
    if api.stage_variables:
        event["stageVariables"] = dict(api.stage_variables)
    return event


def disconnect_event(
    api: ApiIdentity,
    conn: ConnectionFacts,
    *,
    status_code: int,
    reason: str,
    request_id: str,
    now_ms: int,
    authorizer: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``$disconnect`` event with AWS's fixed quirky header set (§1.4)."""
    headers = {"Host": api.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    ctx = request_context(
        api,
        conn,
        route_key="$disconnect",
        event_type="DISCONNECT",
        request_id=request_id,
        now_ms=now_ms,
        authorizer=authorizer,
    )
    ctx["disconnectStatusCode"] = status_code
    ctx["disconnectReason"] = reason
    event: dict[str, Any] = {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": ctx,
        "isBase64Encoded": False,
    }
    if api.stage_variables:
        event["stageVariables"] = dict(api.stage_variables)
    return event
