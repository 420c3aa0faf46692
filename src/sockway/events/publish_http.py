"""HTTP publish ``POST {base_path}/event`` of an events API (appsync-events spec §1.3, §1.4).

Body ``{"channel": "...", "events": ["<json>", ...]}``; auth from the request headers (an
AWS_IAM signature covers this very request). Success: 200 ``{"failed": [...], "successful":
[...]}``. Failure: the status of the spec's table and ``{"errors": [{errorType, message}],
"message": message}`` with the ``x-amzn-ErrorType`` header: Android and Swift decode ``errors``,
Amplify JS (``events.post``) parses the AWS JSON error convention — the name from
``x-amzn-ErrorType``, the text from a top-level ``message``, else "Unknown error" — so both are
sent. CORS preflight is answered for browser clients.

Across nodes (issue 6, 13): a publish reaches the subscribers of every node that is up, or —
when the cluster broker is unavailable or a node that is up has not resubscribed yet — is
refused with a retryable 503 ``ServiceUnavailableException`` (``Retry-After: 1``) and nothing
is delivered anywhere, this node's subscribers included (see ``EventsRuntime.publish``,
docs/brokers.md "Delivery guarantee").
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from sockway.events import wire
from sockway.events.auth import lower_headers
from sockway.events.operations import Operation
from sockway.events.runtime import EventsRuntime
from sockway.events.wire import EventsError

log = logging.getLogger("sockway.appsync")

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "content-type, x-api-key, authorization, x-amz-date, x-amz-security-token, "
        "x-amz-user-agent, x-amz-content-sha256"
    ),
    "Access-Control-Max-Age": "86400",
}


def _error(exc: EventsError) -> web.Response:
    headers = {**_CORS, "x-amzn-ErrorType": exc.error_type}
    if exc.status == 503:
        headers["Retry-After"] = "1"  # draining, or the cluster broker is down: retryable
    return web.Response(
        status=exc.status,
        body=orjson.dumps({"errors": [exc.as_dict()], "message": exc.message}),
        content_type="application/json",
        headers=headers,
    )


class PublishEndpoint:
    def __init__(self, runtime: EventsRuntime) -> None:
        self.rt = runtime

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=200, headers=_CORS)

    async def publish(self, request: web.Request) -> web.Response:
        rt = self.rt
        if rt.draining:
            return _error(EventsError(wire.SERVICE_UNAVAILABLE, "Draining", status=503))
        if request.method != "POST":
            return _error(EventsError(wire.BAD_REQUEST, "Only POST is supported on /event"))
        max_bytes = rt.settings.limits.max_request_bytes
        if request.content_length is not None and request.content_length > max_bytes:
            return _error(EventsError(wire.BAD_REQUEST, "Request payload too large", status=413))
        body = await request.read()
        if len(body) > max_bytes:
            return _error(EventsError(wire.BAD_REQUEST, "Request payload too large", status=413))
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return _error(EventsError(wire.BAD_REQUEST, "Request body must be a JSON object"))
        headers = lower_headers({k: ", ".join(request.headers.getall(k)) for k in request.headers})
        peer = request.transport.get_extra_info("peername") if request.transport else None
        op = Operation(
            auth_headers=headers,
            request_headers={k: v for k, v in headers.items() if k != "cookie"},
            signed_body=body,
            source_ip=str(peer[0]) if peer else "127.0.0.1",
        )
        try:
            outcome = await rt.publish(doc.get("channel"), doc.get("events"), op, all_nodes=True)
        except EventsError as exc:
            return _error(exc)
        except Exception:  # our bug: log it, answer 500 (DESIGN habit 3)
            log.exception("HTTP publish failed", extra={"api": rt.name})
            return _error(wire.internal_failure())
        result = wire.publish_result(None, outcome.successful, outcome.failed)
        return web.Response(
            status=200, body=orjson.dumps(result), content_type="application/json", headers=_CORS
        )
