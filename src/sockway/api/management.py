"""The ``@connections`` management API and sockway's channel extension (apigw spec §4).

Answers are shaped the way botocore parses them (§4.3): errors carry ``x-amzn-ErrorType`` so
boto3 raises the modeled exception (``client.exceptions.GoneException``), and every answer
carries ``x-amzn-RequestId``.

Paths (``{id}`` percent-decoded from the raw path):

- ``POST|GET|DELETE /{stage}/@connections/{id}`` — PostToConnection, GetConnection,
  DeleteConnection;
- ``PUT|DELETE /{stage}/@connections/{id}/channels/{name}`` — join / leave a channel
  (sockway extension);
- ``POST|GET /{stage}/@channels/{name}`` — broadcast to / list a channel (sockway extension).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from sockway.auth.sigv4 import SigV4Failure, verify
from sockway.core.connection import Connection, SendResult, State
from sockway.core.ids import ChannelName
from sockway.core.node import SLOW_CONSUMER_CLOSE
from sockway.protocols.apigw import messages as wire
from sockway.server.apigw import ApiRuntime

log = logging.getLogger("sockway.management")

_CHANNEL = re.compile(r"^[A-Za-z0-9_\-=@,.;:~]{1,256}$")
_JSON = "application/json"


def _iso(epoch_ms: int) -> str:
    t = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _answer(status: int, body: Any = None, error_type: str | None = None) -> web.Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if error_type is not None:
        headers["x-amzn-ErrorType"] = error_type
    if body is None:
        return web.Response(
            status=status, headers=headers, content_type=_JSON if status != 204 else None
        )
    return web.Response(status=status, body=orjson.dumps(body), headers=headers, content_type=_JSON)


def gone() -> web.Response:
    """§4.2: unknown, closed or still-connecting id → 410 GoneException with an empty body."""
    return _answer(410, error_type="GoneException")


def _error(status: int, error_type: str, message: str) -> web.Response:
    return _answer(status, {"message": message}, error_type)


class ManagementApi:
    """HTTP handlers for one websocket API's management endpoints."""

    def __init__(self, runtime: ApiRuntime) -> None:
        self.runtime = runtime
        self._secrets = {
            c.access_key_id: c.secret_access_key for c in runtime.settings.management.credentials
        }

    @property
    def _limit(self) -> int:
        return self.runtime.settings.limits.max_message_bytes

    async def _body(self, request: web.Request) -> bytes | None:
        """The request body, or None when it is over the message limit (checked while reading)."""
        if request.content_length is not None and request.content_length > self._limit:
            return None
        data = await request.content.read(self._limit + 1)
        if len(data) > self._limit:
            return None
        return data

    def _authenticate(self, request: web.Request, body: bytes) -> web.Response | None:
        if not self._secrets:
            return None  # no credentials configured: local development, SigV4 off
        url = f"{request.scheme}://{request.host}{request.raw_path}"
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        try:
            verify(
                method=request.method,
                url=url,
                headers=headers,
                body=body,
                secrets=self._secrets,
                now=dt.datetime.now(dt.UTC),
            )
        except SigV4Failure as exc:
            return _error(403, exc.error_type, exc.message)
        return None

    def _count(self, operation: str, response: web.StreamResponse) -> web.StreamResponse:
        self.runtime.metrics.management.labels(
            self.runtime.name, operation, str(response.status)
        ).inc()
        return response

    async def connections(self, request: web.Request) -> web.StreamResponse:
        """``/{stage}/@connections/{id}[/channels/{name}]``."""
        segments = request.raw_path.split("?", 1)[0].split("/")
        # ['', stage, '@connections', id, ('channels', name)?]
        body = await self._body(request) if request.method in ("POST", "PUT") else b""
        operation = {
            "POST": "PostToConnection",
            "GET": "GetConnection",
            "DELETE": "DeleteConnection",
        }.get(request.method, request.method)
        if len(segments) == 6 and segments[4] == "channels":
            operation = "JoinChannel" if request.method == "PUT" else "LeaveChannel"
        if body is None:
            return self._count(
                operation,
                _error(
                    413,
                    "PayloadTooLargeException",
                    f"Request entity too large: the limit is {self._limit} bytes",
                ),
            )
        denied = self._authenticate(request, body)
        if denied is not None:
            return self._count(operation, denied)
        conn_id = unquote(segments[3]) if len(segments) > 3 else ""
        conn = self.runtime.node.get(self.runtime.name, conn_id)
        if len(segments) == 4:
            return self._count(operation, self._connection_op(request.method, conn, body))
        if len(segments) == 6 and segments[4] == "channels" and request.method in ("PUT", "DELETE"):
            return self._count(
                operation, self._channel_membership(request.method, conn, unquote(segments[5]))
            )
        return self._count(operation, _not_found(request))

    def _connection_op(self, method: str, conn: Connection | None, body: bytes) -> web.Response:
        if conn is None or conn.state is not State.OPEN:
            return gone()
        node = self.runtime.node
        if method == "POST":
            result = conn.send_text(body, node.now_ms())
            if result is SendResult.GONE:
                return gone()
            if result is SendResult.OUTBOX_FULL:
                # botocore retries LimitExceededException (a throttling code), so nothing is lost.
                return _error(
                    429, "LimitExceededException", "The WebSocket client side buffer is full"
                )
            self.runtime.metrics.messages_out.labels(self.runtime.name).inc()
            return _answer(200)
        if method == "GET":
            identity = {"sourceIp": conn.source_ip}
            if conn.user_agent is not None:
                identity["userAgent"] = conn.user_agent
            return _answer(
                200,
                {
                    "connectedAt": _iso(conn.connected_at_ms),
                    "identity": identity,
                    "lastActiveAt": _iso(conn.last_active_ms),
                },
            )
        if method == "DELETE":
            conn.sink.close(wire.CLOSE_NORMAL, wire.REASON_DELETE)  # §4.1: 1000, then 204
            return _answer(204)
        return _error(405, "MethodNotAllowedException", f"{method} is not supported here")

    def _channel_membership(
        self, method: str, conn: Connection | None, channel: str
    ) -> web.Response:
        if not _CHANNEL.match(channel):
            return _bad_channel(channel)
        # Joining is allowed during $connect (CONNECTING): the membership starts delivering when
        # the handshake completes and ends if $connect rejects. Everything else needs OPEN.
        if conn is None or conn.state is State.CLOSED:
            return gone()
        if method == "PUT":
            self.runtime.node.join(conn, ChannelName(channel))
        else:
            self.runtime.node.leave(conn, ChannelName(channel))
        return _answer(204)

    async def channels(self, request: web.Request) -> web.StreamResponse:
        """``/{stage}/@channels/{name}``: broadcast (POST) or list members (GET)."""
        operation = "PostToChannel" if request.method == "POST" else "GetChannel"
        body = await self._body(request) if request.method == "POST" else b""
        if body is None:
            return self._count(
                operation,
                _error(
                    413,
                    "PayloadTooLargeException",
                    f"Request entity too large: the limit is {self._limit} bytes",
                ),
            )
        denied = self._authenticate(request, body)
        if denied is not None:
            return self._count(operation, denied)
        segments = request.raw_path.split("?", 1)[0].split("/")
        if len(segments) != 4:
            return self._count(operation, _not_found(request))
        channel = unquote(segments[3])
        if not _CHANNEL.match(channel):
            return self._count(operation, _bad_channel(channel))
        node = self.runtime.node
        if request.method == "POST":
            delivered, dropped = node.publish(self.runtime.name, ChannelName(channel), body)
            self.runtime.metrics.messages_out.labels(self.runtime.name).inc(delivered)
            if dropped:
                self.runtime.metrics.slow_consumers.labels(self.runtime.name).inc(dropped)
                log.warning(
                    "channel %s: closed %d slow consumers (%s)",
                    channel,
                    dropped,
                    SLOW_CONSUMER_CLOSE[1],
                    extra={"api": self.runtime.name},
                )
            return self._count(
                operation,
                _answer(200, {"delivered": delivered, "disconnectedSlowConsumers": dropped}),
            )
        members = sorted(c.id for c in node.members(self.runtime.name, ChannelName(channel)))
        return self._count(operation, _answer(200, {"channel": channel, "connectionIds": members}))


def _bad_channel(channel: str) -> web.Response:
    return _error(
        400,
        "BadRequestException",
        f"Invalid channel name '{channel[:64]}': 1-256 characters of A-Z a-z 0-9 _-=@,.;:~",
    )


def _not_found(request: web.Request) -> web.Response:
    # API Gateway's answer for a path/method no route matches.
    return _error(
        404,
        "NotFoundException",
        f"No method found matching route {request.path.lstrip('/')} for http method "
        f"{request.method}.",
    )
