"""Pusher protocol v7 frames (pusher spec §1.2-§1.4). Wire field names live only here.

Every function returns the encoded JSON bytes of one frame, ready to be framed once and sent to
any number of sockets.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import orjson

# Close / error codes (spec §1.4) and the messages soketi uses for them.
APP_NOT_FOUND = 4001
APP_DISABLED = 4003
OVER_QUOTA = 4004  # decision: Pusher's code (pusher-js stops reconnecting), not soketi's 4100
UNAUTHORIZED = 4009
OVER_CAPACITY = 4100
RECONNECT = 4200
PONG_TIMEOUT = 4201
CLIENT_EVENT_REJECTED = 4301
SERVER_ERROR = 4302


class ProtocolError(Exception):
    """The client broke a rule; answered with ``pusher:error`` ``code``, maybe a close."""

    def __init__(
        self, code: int | None, message: str, close: bool = False, channel: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close
        # A refused client event names its channel (soketi does), so pusher-js hands the
        # error to that channel's handlers (``channel.bind("pusher:error")``), not only global.
        self.channel = channel


class SubscriptionError(Exception):
    """A subscribe was refused: answered with a channel-scoped ``pusher:subscription_error``.

    Channel-scoped (soketi's form) because Laravel Echo's ``.error()`` only fires on it (§1.3).
    """

    def __init__(self, kind: str | None, message: str, status: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Incoming:
    """A parsed client frame."""

    event: str
    channel: str | None
    data: Any


def parse(raw: str | bytes) -> Incoming:
    """Parse a client frame; raise ``ProtocolError`` for anything but a JSON event object."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(None, "The message is not valid JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), str):
        raise ProtocolError(None, "The message has no event name.")
    channel = doc.get("channel")
    data = doc.get("data")
    # Some clients send data as a JSON string (protocol §1.2: both forms are accepted).
    if isinstance(data, str) and doc["event"].startswith("pusher:"):
        with contextlib.suppress(orjson.JSONDecodeError):
            data = orjson.loads(data)
    return Incoming(doc["event"], channel if isinstance(channel, str) else None, data)


# Client data is echoed inside our own frames, at most this many levels deeper (the presence
# hash: {"presence":{"hash":{id: user_info}}}); orjson encodes at most 254 levels.
_ECHO_HEADROOM = 4


def encode_client_value(value: Any) -> bytes | None:
    """``value`` (parsed from a client frame) encoded, or None when it is nested too deep for
    any frame that echoes it to be encoded (orjson reads 1,024 levels but writes 254).

    One encode: the value wrapped in ``_ECHO_HEADROOM`` lists, which are cut off again.
    """
    try:
        wrapped = orjson.dumps([[[[value]]]])
    except orjson.JSONEncodeError:
        return None
    return wrapped[_ECHO_HEADROOM:-_ECHO_HEADROOM]


def _frame(event: str, channel: str | None = None, data: Any = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {"event": event}
    if channel is not None:
        doc["channel"] = channel
    if data is not None:
        doc["data"] = data
    doc.update(extra)
    return orjson.dumps(doc)


def _json_string(value: Any) -> str:
    return orjson.dumps(value).decode()


def connection_established(socket_id: str, activity_timeout_s: int) -> bytes:
    """``data`` is a JSON string (MUST, §1.2); ``activity_timeout`` non-zero (MUST)."""
    return _frame(
        "pusher:connection_established",
        data=_json_string({"socket_id": socket_id, "activity_timeout": activity_timeout_s}),
    )


def error(code: int | None, message: str, channel: str | None = None) -> bytes:
    """``pusher:error``; with ``channel`` pusher-js routes it to that channel too (§1.6)."""
    return _frame("pusher:error", channel, data={"code": code, "message": message})


def pong() -> bytes:
    return _frame("pusher:pong", data={})


def ping() -> bytes:
    return _frame("pusher:ping", data={})


def subscription_succeeded(channel: str) -> bytes:
    """Non-presence: no ``data`` (soketi; pusher-js reads data only for presence)."""
    return _frame("pusher_internal:subscription_succeeded", channel)


def presence_succeeded(channel: str, ids: list[Any], hash_: dict[str, Any]) -> bytes:
    presence = {"presence": {"ids": ids, "hash": hash_, "count": len(ids)}}
    return _frame("pusher_internal:subscription_succeeded", channel, _json_string(presence))


def subscription_error(channel: str, exc: SubscriptionError) -> bytes:
    data: dict[str, Any] = {"error": exc.message, "status": exc.status}
    if exc.kind is not None:
        data = {"type": exc.kind, **data}
    return _frame("pusher:subscription_error", channel, data)


def member_added(channel: str, user_id: Any, user_info: Any) -> bytes:
    payload: dict[str, Any] = {"user_id": user_id}
    if user_info is not None:
        payload["user_info"] = user_info
    return _frame("pusher_internal:member_added", channel, _json_string(payload))


def member_removed(channel: str, user_id: Any) -> bytes:
    return _frame("pusher_internal:member_removed", channel, _json_string({"user_id": user_id}))


def cache_miss(channel: str) -> bytes:
    return _frame("pusher:cache_miss", channel)


def signin_success(auth: str, user_data: str) -> bytes:
    """soketi echoes the request; pusher-js parses ``user_data`` and needs a string ``id``."""
    return _frame("pusher:signin_success", data={"auth": auth, "user_data": user_data})


def channel_event(event: str, channel: str, data: Any, user_id: Any = None) -> bytes:
    """An event on a channel: API events carry ``data`` exactly as the HTTP caller sent it;
    client events as the client sent it, plus ``user_id`` on presence channels (§1.6)."""
    if user_id is not None:
        return _frame(event, channel, data, user_id=user_id)
    return _frame(event, channel, data)
