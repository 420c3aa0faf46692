"""The Pusher HTTP API of one app (pusher spec §3): events, batches, channel queries, users.

Every request is verified as both SDKs sign it (§3.1, ``verify_request``). Success bodies are
JSON (the py SDK parses every 200); errors are ``{"error": msg, "code": status}`` with the
statuses of §3.3: 400 invalid request, 401 signature, 404 unknown app, 413 payload, 429 rate.

On a cluster (issue 6) events reach every node and the queries answer from the broker, so
every node answers the same. When the broker is unreachable those calls answer **503**
``{"error": ..., "code": 503, "retryable": true}`` with ``Retry-After`` (the SDKs raise on
5xx; the caller may retry): an event was then delivered nowhere, except within a batch, whose
events before the failing one were delivered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from sockway.brokers.base import BrokerUnavailable
from sockway.pusher.channels import Kind, kind_of, valid_name
from sockway.pusher.cluster import local_members
from sockway.pusher.signatures import RequestAuthError, verify_request
from sockway.pusher.state import PusherAppState

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Origin, Content-Type, X-Auth-Token, X-Requested-With, "
    "Accept, Authorization, X-CSRF-TOKEN, XSRF-TOKEN, X-Socket-Id",
}
RETRY_AFTER_S = "1"

log = logging.getLogger("sockway.pusher.http")


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class _Window:
    """A one-second fixed-window counter (soketi's limiter uses 1 s windows, §5.6)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.start = 0.0
        self.used = 0

    def take(self, points: int, now: float) -> dict[str, str]:
        """Consume ``points``; the rate-limit headers, or ``HttpError`` 429 over the limit."""
        if self.limit < 0:
            return {}
        if now - self.start >= 1:
            self.start, self.used = now, 0
        retry_after = max(0.0, 1 - (now - self.start))
        if self.used + points > self.limit:
            raise HttpError(
                429,
                "Too many requests.",
                {
                    "Retry-After": f"{retry_after:.3f}",
                    "X-RateLimit-Limit": str(self.limit),
                    "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
                },
            )
        self.used += points
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - self.used),
        }


class PusherHttpApi:
    def __init__(self, app: PusherAppState) -> None:
        self.app = app
        self.backend = _Window(app.settings.max_backend_events_per_sec)
        self.reads = _Window(app.settings.max_read_req_per_sec)

    @staticmethod
    def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(
            {"error": message, "code": status}, status=status, headers={**CORS, **(headers or {})}
        )

    async def handle(self, request: web.Request, tail: str) -> web.StreamResponse:
        """One HTTP API request, counted per app as soketi counts them (calls, bytes)."""
        response = await self._handle(request, tail)
        s, m = self.app.settings, self.app.metrics
        m.pusher_http_calls.labels(s.name, s.app_id, str(response.status)).inc()
        m.pusher_http_bytes.labels(s.name, s.app_id, "received").inc(request.content.total_bytes)
        if isinstance(response, web.Response) and response.body is not None:
            sent = response.body
            m.pusher_http_bytes.labels(s.name, s.app_id, "sent").inc(
                len(sent) if isinstance(sent, bytes | bytearray) else 0
            )
        return response

    async def _handle(self, request: web.Request, tail: str) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=CORS)
        body = await self._body(request)
        if body is None:
            return self.error(413, "The payload size is too big.")
        try:
            verify_request(
                method=request.method,
                path=request.raw_path.split("?", 1)[0],
                params=request.query.items(),
                body=body,
                key=self.app.settings.key,
                secret=self.app.settings.secret,
                now_s=self.app.node.clock.time(),
                window_s=self.app.settings.auth_timestamp_window_s,
            )
            result, headers = await self._route(request.method, tail, request, body)
        except RequestAuthError as exc:
            return self.error(401, f"The secret authentication failed. {exc}")
        except HttpError as exc:
            return self.error(exc.status, exc.message, exc.headers)
        except BrokerUnavailable as exc:
            log.warning("%s %s: cluster unavailable: %s", request.method, tail, exc)
            return web.json_response(
                {
                    "error": "The gateway cluster's broker is unavailable; the request was not "
                    "applied. It is safe to retry later.",
                    "code": 503,
                    "retryable": True,
                },
                status=503,
                headers={**CORS, "Retry-After": RETRY_AFTER_S},
            )
        if result is None:
            return web.Response(status=404, headers=CORS)
        return web.Response(
            body=orjson.dumps(result),
            content_type="application/json",
            headers={**CORS, **headers},
        )

    async def _body(self, request: web.Request) -> bytes | None:
        """The request body, or None when it is over ``max_http_request_mb`` (soketi's
        ``httpApi.requestLimitInMb``; issue 17 case 6): refused by its ``Content-Length``
        before it is read, else once that much has arrived."""
        limit = int(self.app.settings.max_http_request_mb * 1024 * 1024)
        if request.content_length is not None and request.content_length > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(64 * 1024):
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _route(
        self, method: str, tail: str, request: web.Request, body: bytes
    ) -> tuple[Any, dict[str, str]]:
        parts = tail.split("/")
        now = self.app.node.clock.time()
        if method == "POST" and tail == "events":
            event = _json_object(body)
            channels = _channels_of(event)
            headers = self.backend.take(len(channels), now)
            return await self._trigger([(c, event) for c in channels], batch=False), headers
        if method == "POST" and tail == "batch_events":
            doc = _json_object(body)
            batch = doc.get("batch")
            if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
                raise HttpError(400, "batch must be a list of events.")
            if len(batch) > self.app.settings.max_event_batch_size:
                raise HttpError(
                    400,
                    f"Cannot batch-send more than {self.app.settings.max_event_batch_size} "
                    "messages at once.",
                )
            pairs = [(_one_channel(e), e) for e in batch]
            headers = self.backend.take(len(pairs), now)
            return await self._trigger(pairs, batch=True), headers
        if method == "GET" and parts[0] == "channels" and len(parts) in (1, 2, 3):
            headers = self.reads.take(1, now)
            if len(parts) == 1:
                return await self._channels(request), headers
            if len(parts) == 2:
                return await self._channel(parts[1], request), headers
            if parts[2] == "users":
                return await self._users(parts[1]), headers
        if (
            method == "POST"
            and len(parts) == 3
            and parts[0] == "users"
            and parts[2] == "terminate_connections"
        ):
            await self.app.terminate_user(parts[1])
            return {}, {}
        return None, {}

    # -- events ---------------------------------------------------------------------------

    def _check_event(self, channel: str, event: dict[str, Any]) -> None:
        s = self.app.settings
        name, data = event.get("name"), event.get("data")
        if not isinstance(name, str) or not name:
            raise HttpError(400, "The event name is required.")
        if len(name) > s.max_event_name_length:
            raise HttpError(
                400, f"The event name must be at most {s.max_event_name_length} characters."
            )
        if not isinstance(data, str):
            raise HttpError(400, "The event data is required and must be a string.")
        if len(data.encode()) > s.max_event_payload_in_kb * 1024:
            raise HttpError(413, "The payload size is too big.")
        if not valid_name(channel, s.max_channel_name_length):
            raise HttpError(400, f"Invalid channel name: {channel[:210]}")
        socket_id = event.get("socket_id")
        if socket_id is not None and not isinstance(socket_id, str):
            raise HttpError(400, "socket_id must be a string.")

    async def _trigger(
        self, pairs: list[tuple[str, dict[str, Any]]], batch: bool
    ) -> dict[str, Any]:
        """All events are checked before any is sent: the whole request succeeds or fails."""
        if batch:
            for channel, event in pairs:
                self._check_event(channel, event)
        elif pairs:
            channels = [channel for channel, _ in pairs]
            if len(channels) > self.app.settings.max_event_channels_at_once:
                raise HttpError(
                    400,
                    f"Cannot trigger on more than "
                    f"{self.app.settings.max_event_channels_at_once} channels at once.",
                )
            for channel in channels:
                self._check_event(channel, pairs[0][1])
        cluster = self.app.cluster
        if cluster is not None and not cluster.available:
            raise BrokerUnavailable("the broker is down")  # before delivering anything
        # One broker publication for all (issue 13): a 503 means none was delivered anywhere.
        await self.app.trigger_many(
            [(c, event["name"], event["data"], event.get("socket_id")) for c, event in pairs]
        )
        infos = [await self._info(channel, event.get("info")) for channel, event in pairs]
        if batch:
            return {"batch": infos} if any(e.get("info") for _, e in pairs) else {}
        if pairs and pairs[0][1].get("info"):
            return {
                "channels": {
                    channel: info for (channel, _), info in zip(pairs, infos, strict=False)
                }
            }
        return {}

    async def _info(self, channel: str, info: Any, count: int | None = None) -> dict[str, Any]:
        """The requested attributes (cluster-wide); ``count`` when already known."""
        if not isinstance(info, str) or not info:
            return {}
        out: dict[str, Any] = {}
        attributes = set(info.split(","))
        if "subscription_count" in attributes:
            out["subscription_count"] = await self._count(channel) if count is None else count
        if "user_count" in attributes and kind_of(channel) is Kind.PRESENCE:
            out["user_count"] = len(await self._members(channel))
        return out

    # -- queries ---------------------------------------------------------------------------

    async def _channels(self, request: web.Request) -> dict[str, Any]:
        prefix = request.query.get("filter_by_prefix", "")
        attributes = _attributes(request)
        if "user_count" in attributes and not prefix.startswith("presence-"):
            raise HttpError(400, "user_count may only be requested with filter_by_prefix=presence-")
        occupied = await self._occupied(prefix)
        names = sorted(occupied)
        always = self.app.settings.channel_info_counts == "always"
        if always:  # soketi: {"subscription_count": N, "occupied": true} for each
            attributes = [a for a in attributes if a != "subscription_count"]
        info = ",".join(attributes)
        infos = await asyncio.gather(*(self._info(n, info, occupied[n]) for n in names))
        if always:
            infos = [
                {"subscription_count": occupied[n], "occupied": True, **i}
                for n, i in zip(names, infos, strict=True)
            ]
        return {"channels": dict(zip(names, infos, strict=True))}

    async def _channel(self, channel: str, request: web.Request) -> dict[str, Any]:
        attributes = _attributes(request)
        if self.app.settings.channel_info_counts == "always":  # soketi: both, info= ignored
            attributes = ["subscription_count"]
            if kind_of(channel) is Kind.PRESENCE:
                attributes.append("user_count")
        elif "user_count" in attributes and kind_of(channel) is not Kind.PRESENCE:
            raise HttpError(400, "user_count is only available for presence channels.")
        count = await self._count(channel)
        return {"occupied": count > 0, **(await self._info(channel, ",".join(attributes), count))}

    async def _users(self, channel: str) -> dict[str, Any]:
        if kind_of(channel) is not Kind.PRESENCE:
            raise HttpError(400, "The channel must be a presence channel.")
        members = await self._members(channel)
        return {"users": [{"id": str(user_id)} for user_id, _ in members]}

    # -- cluster-wide state (this node's alone without a cluster) ---------------------------

    async def _count(self, channel: str) -> int:
        cluster = self.app.cluster
        if cluster is not None:
            return await cluster.count(channel)
        return self.app.subscription_count(channel)

    async def _occupied(self, prefix: str) -> dict[str, int]:
        """Occupied channels starting with ``prefix`` → subscriber counts."""
        cluster = self.app.cluster
        if cluster is not None:
            return await cluster.channels(prefix)
        names = self.app.node.channel_names(self.app.name)
        return {n: self.app.subscription_count(n) for n in names if n.startswith(prefix)}

    async def _members(self, channel: str) -> list[tuple[Any, Any]]:
        """``(user_id, user_info)`` of the presence channel's members."""
        cluster = self.app.cluster
        if cluster is not None:
            return await cluster.members(channel)
        return local_members(self.app.presence, channel)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HttpError(400, "The body is not valid JSON.") from None
    if not isinstance(doc, dict):
        raise HttpError(400, "The body must be a JSON object.")
    return doc


def _channels_of(event: dict[str, Any]) -> list[str]:
    channels = event.get("channels")
    if channels is None and isinstance(event.get("channel"), str):
        return [event["channel"]]
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) for c in channels)
    ):
        raise HttpError(400, "channels (a list of names) or channel is required.")
    return list(dict.fromkeys(channels))


def _one_channel(event: dict[str, Any]) -> str:
    channel = event.get("channel")
    if not isinstance(channel, str):
        raise HttpError(400, "Each batch event needs a channel.")
    return channel


def _attributes(request: web.Request) -> list[str]:
    info = request.query.get("info", "")
    return [a for a in info.split(",") if a] if info else []
