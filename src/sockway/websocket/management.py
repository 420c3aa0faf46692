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
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from sockway.brokers.base import BrokerUnavailable
from sockway.core.connection import Connection, SendResult, State
from sockway.core.ids import ChannelName
from sockway.frontdoor.cluster import Cluster, topic
from sockway.frontdoor.sigv4 import SigV4Failure, verify
from sockway.observability.tap import Activity
from sockway.websocket import wire
from sockway.websocket.runtime import ApiRuntime

log = logging.getLogger("sockway.management")

_CHANNEL = re.compile(r"^[A-Za-z0-9_\-=@,.;:~]{1,256}$")
_JSON = "application/json"
_DRAIN_LIMIT = 4 * 1024 * 1024  # the HTTP app's client_max_size


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


async def _drain(request: web.Request) -> None:
    """Read and drop the rest of a body, at most ``_DRAIN_LIMIT`` bytes."""
    dropped = 0
    while dropped <= _DRAIN_LIMIT:
        chunk = await request.content.read(65536)
        if not chunk:
            return
        dropped += len(chunk)


def _error(status: int, error_type: str, message: str) -> web.Response:
    return _answer(status, {"message": message}, error_type)


class ManagementApi:
    """HTTP handlers for one websocket API's management endpoints."""

    def __init__(self, runtime: ApiRuntime, cluster: Cluster) -> None:
        self.runtime = runtime
        self.cluster = cluster
        cluster.requests[self.request_op] = self.on_request
        cluster.requests[self.members_op] = self.on_members_request
        self._secrets = {
            c.access_key_id: c.secret_access_key for c in runtime.settings.management.credentials
        }

    @property
    def _limit(self) -> int:
        return self.runtime.settings.limits.max_message_bytes

    async def _body(self, request: web.Request) -> bytes | None:
        """The request body, or None when it is over the message limit.

        A declared ``Content-Length`` over the limit is refused without reading; otherwise the
        body is read until it ends or passes the limit (``StreamReader.read(n)`` returns what is
        buffered, up to ``n``: one call may stop short of the body's end). A refused body is
        read and dropped, up to the HTTP app's own bound, so the client — still sending — sees
        the 413 instead of a reset connection that botocore would retry.
        """
        limit = self._limit
        declared = request.content_length
        if declared is not None and declared > limit:
            if declared <= _DRAIN_LIMIT:
                await _drain(request)
            return None
        data = bytearray()
        while len(data) <= limit:
            chunk = await request.content.read(limit + 1 - len(data))
            if not chunk:
                return bytes(data)
            data += chunk
        await _drain(request)
        return None

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
                service="execute-api",  # apigw spec §4.1: signingName execute-api
                region=self.runtime.settings.region,
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
        """``/{stage}/@connections/{id}[/channels/{name}]``, wherever the connection is."""
        segments = request.raw_path.split("?", 1)[0].split("/")
        # ['', stage, '@connections', id, ('channels', name)?]
        body = await self._body(request) if request.method in ("POST", "PUT") else b""
        operation = {
            "POST": "PostToConnection",
            "GET": "GetConnection",
            "DELETE": "DeleteConnection",
        }.get(request.method, request.method)
        channel: str | None = None
        if len(segments) == 6 and segments[4] == "channels":
            operation = "JoinChannel" if request.method == "PUT" else "LeaveChannel"
            channel = unquote(segments[5])
        if body is None:
            return self._count(operation, _too_large(self._limit))
        denied = self._authenticate(request, body)
        if denied is not None:
            return self._count(operation, denied)
        conn_id = unquote(segments[3]) if len(segments) > 3 else ""
        if len(segments) == 4 or (channel is not None and request.method in ("PUT", "DELETE")):
            if channel is not None and not _CHANNEL.match(channel):
                return self._count(operation, _bad_channel(channel))
            outcome = await self._on_connection(request.method, conn_id, channel, body)
            return self._count(operation, outcome.response())
        return self._count(operation, _not_found(request))

    async def _on_connection(
        self, method: str, conn_id: str, channel: str | None, body: bytes
    ) -> Outcome:
        """Act on this node's connection, or ask the node that holds it (issue 6 §2)."""
        if self.runtime.node.get(self.runtime.name, conn_id) is not None:
            return await self.local_connection_op(method, conn_id, channel, body)
        cluster = self.cluster
        try:
            owner = await cluster.broker.locate(topic(self.runtime.name, conn_id))
            if owner is None or owner == cluster.node_id:
                return GONE
            answer, _ = await cluster.request(
                owner,
                self.request_op,
                {"method": method, "id": conn_id, "channel": channel},
                body,
            )
        except LookupError:  # the holder died: its connections are gone
            return GONE
        except BrokerUnavailable as exc:
            return unavailable(exc)
        return Outcome(answer["status"], answer.get("body"), answer.get("error_type"))

    @property
    def request_op(self) -> str:
        return f"apigw.connection:{self.runtime.name}"

    async def on_request(self, args: dict[str, Any], data: bytes) -> tuple[dict[str, Any], bytes]:
        """Another node forwards an ``@connections`` call for a connection of this node."""
        outcome = await self.local_connection_op(
            args["method"], args["id"], args.get("channel"), data
        )
        return {
            "status": outcome.status,
            "body": outcome.body,
            "error_type": outcome.error_type,
        }, b""

    async def on_members_request(
        self, args: dict[str, Any], data: bytes
    ) -> tuple[dict[str, Any], bytes]:
        members = self.runtime.node.members(self.runtime.name, ChannelName(args["channel"]))
        return {"ids": [str(c.id) for c in members]}, b""

    async def local_connection_op(
        self, method: str, conn_id: str, channel: str | None, body: bytes
    ) -> Outcome:
        conn = self.runtime.node.get(self.runtime.name, conn_id)
        if channel is not None:
            outcome = self._channel_membership(method, conn, channel)
            if method == "PUT" and outcome.status == 204:
                # 204 once broadcasts from any node reach the member (issue 6); during a broker
                # outage the membership is local until the broker is back.
                await self.cluster.ready(topic(self.runtime.name, channel))
            return outcome
        return self._connection_op(method, conn, body)

    def _connection_op(self, method: str, conn: Connection | None, body: bytes) -> Outcome:
        if conn is None or conn.state is not State.OPEN:
            return GONE
        node = self.runtime.node
        if method == "POST":
            # Not UTF-8 → a binary frame (README "Binary data"): PostToConnection's Data is a
            # blob and AWS models no 400 for it, and a text frame must be valid UTF-8.
            result = conn.send_data(body, node.now_ms())
            if result is SendResult.GONE:
                return GONE
            if result is SendResult.OUTBOX_FULL:
                # botocore retries LimitExceededException (a throttling code), so nothing is lost.
                return Outcome(
                    429,
                    {"message": "The WebSocket client side buffer is full"},
                    "LimitExceededException",
                )
            self.runtime.metrics.messages_out.labels(self.runtime.name).inc()
            tap = self.runtime.tap
            if tap.detailed:
                tap.emit(
                    Activity(
                        "out",
                        self.runtime.name,
                        connection_id=conn.id,
                        payload=body.decode("utf-8", "replace"),
                        detail={"by": "@connections"},
                    )
                )
            return Outcome(200)
        if method == "GET":
            identity = {"sourceIp": conn.source_ip}
            if conn.user_agent is not None:
                identity["userAgent"] = conn.user_agent
            return Outcome(
                200,
                {
                    "connectedAt": _iso(conn.connected_at_ms),
                    "identity": identity,
                    "lastActiveAt": _iso(conn.last_active_ms),
                },
            )
        if method == "DELETE":
            conn.sink.close(wire.CLOSE_NORMAL, wire.REASON_DELETE)  # §4.1: 1000, then 204
            return Outcome(204)
        return Outcome(
            405, {"message": f"{method} is not supported here"}, "MethodNotAllowedException"
        )

    def _channel_membership(self, method: str, conn: Connection | None, channel: str) -> Outcome:
        # Joining is allowed during $connect (CONNECTING): the membership starts delivering when
        # the handshake completes and ends if $connect rejects. Everything else needs OPEN.
        if conn is None or conn.gone:
            return GONE
        if method == "PUT":
            self.runtime.node.join(conn, ChannelName(channel))
        else:
            self.runtime.node.leave(conn, ChannelName(channel))
        return Outcome(204)

    async def channels(self, request: web.Request) -> web.StreamResponse:
        """``/{stage}/@channels/{name}``: broadcast (POST) or list members (GET), cluster-wide.

        A broadcast reaches the channel's members on every node; ``delivered`` counts those of
        the node that took the request (the others deliver without answering back). With the
        broker unreachable the request fails with 503 before anything is delivered.
        """
        operation = "PostToChannel" if request.method == "POST" else "GetChannel"
        body = await self._body(request) if request.method == "POST" else b""
        if body is None:
            return self._count(operation, _too_large(self._limit))
        denied = self._authenticate(request, body)
        if denied is not None:
            return self._count(operation, denied)
        segments = request.raw_path.split("?", 1)[0].split("/")
        if len(segments) != 4:
            return self._count(operation, _not_found(request))
        channel = unquote(segments[3])
        if not _CHANNEL.match(channel):
            return self._count(operation, _bad_channel(channel))
        if not self.cluster.available:
            return self._count(operation, unavailable(None).response())
        if request.method == "POST":
            return self._count(operation, await self._broadcast(channel, body))
        try:
            replies = await self.cluster.request_all(self.members_op, {"channel": channel})
        except BrokerUnavailable as exc:
            return self._count(operation, unavailable(exc).response())
        members = sorted(i for answer, _ in replies for i in answer.get("ids", ()))
        return self._count(operation, _answer(200, {"channel": channel, "connectionIds": members}))

    @property
    def members_op(self) -> str:
        return f"apigw.members:{self.runtime.name}"

    async def publish_text(self, channel: str, data: str, event: str | None) -> int:
        """The console's publish (``frontdoor.contract.Operable``): as ``POST @channels``."""
        if not _CHANNEL.match(channel):
            raise ValueError(
                f"invalid channel name '{channel[:64]}': 1-256 characters of A-Z a-z 0-9 _-=@,.;:~"
            )
        response = await self._broadcast(channel, data.encode())
        if response.status == 503:
            raise BrokerUnavailable("the broker is unreachable")
        if response.status != 200:
            raise ValueError(f"publish failed: HTTP {response.status}")
        delivered = orjson.loads(response.body or b"{}").get("delivered", 0)  # type: ignore[arg-type]
        return int(delivered)

    async def _broadcast(self, channel: str, body: bytes) -> web.Response:
        """The other nodes first: a 503 then means nobody got it, this node's members
        neither (docs/brokers.md "Delivery guarantee"); a 200 that every node that is up did."""
        name = self.runtime.name
        try:
            await self.cluster.publish(name, channel, body)
        except BrokerUnavailable as exc:
            return unavailable(exc).response()
        delivered, dropped = self.runtime.node.publish(name, ChannelName(channel), body)
        tap = self.runtime.tap
        if tap.detailed:
            tap.emit(
                Activity(
                    "publish",
                    name,
                    channel=channel,
                    payload=body.decode("utf-8", "replace"),
                    detail={"delivered": delivered},
                )
            )
        self.runtime.metrics.messages_out.labels(name).inc(delivered)
        if dropped:  # each logged once by the node
            self.runtime.metrics.slow_consumers.labels(name).inc(dropped)
        return _answer(200, {"delivered": delivered, "disconnectedSlowConsumers": dropped})


@dataclass(frozen=True, slots=True)
class Outcome:
    """An answer that can travel between nodes (status, JSON body, error type)."""

    status: int
    body: Any = None
    error_type: str | None = None

    def response(self) -> web.Response:
        return _answer(self.status, self.body, self.error_type)


# §4.2: unknown, closed or still-connecting id → 410 GoneException with an empty body.
GONE = Outcome(410, None, "GoneException")


def unavailable(exc: Exception | None) -> Outcome:
    """503: botocore retries it (a transient status), so callers need do nothing."""
    detail = f" ({exc})" if exc is not None else ""
    return Outcome(
        503,
        {"message": f"The cluster broker is unreachable{detail}; retry the request"},
        "ServiceUnavailableException",
    )


def _too_large(limit: int) -> web.Response:
    return _error(
        413, "PayloadTooLargeException", f"Request entity too large: the limit is {limit} bytes"
    )


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
