"""Handler events and answers of AppSync Events direct Lambda integrations (spec §3.5, §6.2, §6.3).

Pure functions: build the context object a handler receives (every key Powertools checks is
present), and turn a handler's answer into what is broadcast, what failed and what the client
is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sockway.core.channels import ChannelPath
from sockway.events.wire import (
    HANDLER_ERROR,
    NOT_AUTHORIZED_MESSAGE,
    SUBSCRIPTION_ERROR,
    UNAUTHORIZED,
    EventsError,
)

PUBLISH = "PUBLISH"
SUBSCRIBE = "SUBSCRIBE"
UNABLE = "Unable to process request"


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One published event: its id (a UUID, also the response ``identifier``) and JSON text."""

    id: str
    index: int
    text: str


def handler_event(
    *,
    operation: str,
    channel: ChannelPath,
    identity: Any,
    headers: Mapping[str, str],
    domain_name: str | None,
    events: list[IncomingEvent] | None,
) -> dict[str, Any]:
    """The context object of spec §6.3 (keys as Powertools' ``isAppSyncEventsEvent`` requires).

    ``payload`` is the parsed JSON of each event; subscribe has ``events: null``.
    """
    return {
        "identity": identity,
        "result": None,
        "request": {"headers": dict(headers), "domainName": domain_name},
        "info": {
            "channel": {"path": channel.path, "segments": list(channel.segments)},
            "channelNamespace": {"name": channel.namespace},
            "operation": operation,
        },
        "error": None,
        "prev": None,
        "stash": {},
        "outErrors": [],
        "events": (
            None
            if events is None
            else [{"id": e.id, "payload": orjson.loads(e.text)} for e in events]
        ),
    }


@dataclass(slots=True)
class PublishOutcome:
    """What to broadcast (JSON texts, in the handler's order) and the per-event results."""

    broadcast: list[str] = field(default_factory=list)
    successful: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)


def unchanged(events: list[IncomingEvent]) -> PublishOutcome:
    """No handler (or an EVENT invocation): every event is broadcast as published (§6.1)."""
    return PublishOutcome(
        broadcast=[e.text for e in events],
        successful=[{"identifier": e.id, "index": e.index} for e in events],
    )


def publish_answer(result: Any, events: list[IncomingEvent]) -> PublishOutcome:
    """Interpret an onPublish REQUEST_RESPONSE answer ``{"events"?: [...], "error"?: str}``.

    - top-level ``error``: the whole publish fails (``EventsError`` HandlerExecutionError with
      the handler's message; HTTP 403 / ``publish_error``, spec §6.2);
    - each ``{id, payload}`` is broadcast (payload re-serialised), each ``{id, error}`` is
      reported in ``failed`` and not broadcast; ``null`` items are ignored;
    - events the handler leaves out are dropped: not broadcast, reported as successful
      (AppSync counts them as ``DroppedEvents``, not failures);
    - an unknown or repeated id, or any other shape, fails the whole publish.
    """
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise EventsError(HANDLER_ERROR, UNABLE)
    error = result.get("error")
    if error is not None:
        raise EventsError(HANDLER_ERROR, str(error), status=403)  # util.error → 403 (§6.2)
    out = result.get("events")
    if out is None:
        out = []
    if not isinstance(out, list):
        raise EventsError(HANDLER_ERROR, UNABLE)
    by_id = {e.id: e for e in events}
    outcome = PublishOutcome()
    seen: set[str] = set()
    for item in out:
        if item is None:
            continue
        if not isinstance(item, dict) or item.get("id") not in by_id or item["id"] in seen:
            raise EventsError(HANDLER_ERROR, UNABLE)
        event = by_id[item["id"]]
        seen.add(event.id)
        if item.get("error") is not None:
            message = str(item["error"])
            outcome.failed.append(
                {
                    "identifier": event.id,
                    "index": event.index,
                    "message": message,
                    "errorMessage": message,
                }
            )
            continue
        payload = item.get("payload")
        outcome.broadcast.append(orjson.dumps(payload).decode())
    for event in events:
        if not any(f["identifier"] == event.id for f in outcome.failed):
            outcome.successful.append({"identifier": event.id, "index": event.index})
    return outcome


def subscribe_answer(result: Any) -> None:
    """Interpret an onSubscribe answer: ``None`` allows; ``{"error": msg}`` rejects (§6.3).

    Any other value fails with HandlerExecutionError "Unable to process request", as AWS does
    (PT-TS #3884).
    """
    if result is None:
        return
    if isinstance(result, dict) and set(result) == {"error"} and result["error"] is not None:
        raise EventsError(SUBSCRIPTION_ERROR, str(result["error"]))
    raise EventsError(HANDLER_ERROR, UNABLE)


def function_error(error_type: str) -> EventsError:
    """A handler that raised: Powertools' ``UnauthorizedException`` denies (§6.3)."""
    if error_type == UNAUTHORIZED:
        return EventsError(UNAUTHORIZED, NOT_AUTHORIZED_MESSAGE, status=403)
    return EventsError(HANDLER_ERROR, UNABLE)


def authorizer_request(
    *,
    token: str,
    api_id: str,
    account_id: str,
    request_id: str,
    operation: str,
    channel: ChannelPath | None,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    """The AWS_LAMBDA authorizer's event (spec §3.5); ``operation`` is ``EVENT_CONNECT`` etc."""
    return {
        "authorizationToken": token,
        "requestContext": {
            "apiId": api_id,
            "accountId": account_id,
            "requestId": request_id,
            "operation": operation,
            "channelNamespaceName": channel.namespace if channel is not None else None,
            "channel": channel.path if channel is not None else None,
        },
        "requestHeaders": dict(headers),
    }


@dataclass(frozen=True, slots=True)
class LambdaDecision:
    authorized: bool
    context: dict[str, Any] | None
    ttl_s: int | None


def authorizer_answer(result: Any) -> LambdaDecision:
    """``{"isAuthorized": bool, "handlerContext"|"resolverContext": {...}, "ttlOverride": s}``.

    Anything but ``isAuthorized: true`` denies. Either context key is read (spec §3.5).
    """
    if not isinstance(result, dict) or result.get("isAuthorized") is not True:
        return LambdaDecision(False, None, None)
    context = result.get("handlerContext", result.get("resolverContext"))
    ttl = result.get("ttlOverride")
    return LambdaDecision(
        True,
        context if isinstance(context, dict) else None,
        ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
    )


def lambda_identity(context: dict[str, Any] | None) -> dict[str, Any]:
    """Handler identity of an AWS_LAMBDA request: both key names (spec §3.5 compatibility)."""
    ctx = context or {}
    return {"handlerContext": ctx, "resolverContext": ctx}
