"""What a Pusher client's frames do (pusher spec §1.3-§1.9), and the keep-alive sweep.

Handlers run synchronously on the event loop, so a frame is fully applied (memberships, fan-out,
webhooks queued) before the next one is read; only a change that must await the cluster's broker
(presence, cluster-wide counts: issue 6) is returned as an awaitable, which the session awaits
before it reads the socket's next frame.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import orjson

from sockway.pusher import wire
from sockway.pusher.channels import (
    Kind,
    allows_client_events,
    kind_of,
    needs_auth,
    server_to_user_id,
    valid_name,
)
from sockway.pusher.membership import presence_full
from sockway.pusher.signatures import channel_auth_ok, user_auth_ok
from sockway.pusher.state import PusherAppState, PusherSocket
from sockway.pusher.watchlist import parse_watchlist
from sockway.pusher.wire import ProtocolError, SubscriptionError

log = logging.getLogger("sockway.pusher")


def handle_frame(
    app: PusherAppState, sock: PusherSocket, raw: str | bytes
) -> Awaitable[None] | None:
    """Apply one client frame; protocol faults are answered with ``pusher:error``. What is
    returned must be awaited before the next frame of this socket."""
    now = app.node.now_ms()
    sock.last_seen_ms = now
    sock.ping_sent_ms = None  # any frame proves the client is alive (§1.9)
    try:
        msg = wire.parse(raw)
        if msg.event == "pusher:ping":
            app.send(sock, wire.pong())
        elif msg.event == "pusher:pong":
            pass
        elif msg.event == "pusher:subscribe":
            return _subscribe(app, sock, msg.data)
        elif msg.event == "pusher:unsubscribe":
            channel = msg.data.get("channel") if isinstance(msg.data, dict) else None
            if isinstance(channel, str):
                return app.leave(sock, channel)  # no reply (soketi, §1.3)
        elif msg.event == "pusher:signin":
            return _signin(app, sock, msg.data)
        elif msg.event.startswith("client-"):
            try:
                _client_event(app, sock, msg)
            except ProtocolError as exc:
                exc.channel = msg.channel  # scoped to the channel, as soketi does (case 1)
                raise
        # Other events (unknown pusher:*) are ignored, as soketi does.
    except ProtocolError as exc:
        if exc.close:
            app.close_with_error(sock, exc.code or wire.UNAUTHORIZED, exc.message)
        else:
            app.send(sock, wire.error(exc.code, exc.message, exc.channel))
    return None


def _subscribe(app: PusherAppState, sock: PusherSocket, data: Any) -> Awaitable[None] | None:
    if app.draining:
        raise ProtocolError(wire.RECONNECT, "Server is closing. Please reconnect shortly.", True)
    if not isinstance(data, dict) or not isinstance(data.get("channel"), str):
        raise ProtocolError(wire.UNAUTHORIZED, "pusher:subscribe needs data.channel.")
    channel: str = data["channel"]
    try:
        member = _check_subscription(app, sock, channel, data)
    except SubscriptionError as exc:
        app.send(sock, wire.subscription_error(channel, exc))
        return None
    kind = kind_of(channel)
    if needs_auth(kind):
        sock.auth_deadline_ms = None  # an authorized subscription counts as authenticated
    return app.join(sock, channel, member)


def _check_subscription(
    app: PusherAppState, sock: PusherSocket, channel: str, data: dict[str, Any]
) -> tuple[Any, Any] | None:
    """Validate a subscribe; the presence member ``(user_id, user_info)`` when presence."""
    s = app.settings
    if len(channel) > s.max_channel_name_length:
        raise SubscriptionError(
            "LimitReached",
            f"The channel name is longer than the allowed {s.max_channel_name_length} characters.",
            wire.UNAUTHORIZED,
        )
    if not valid_name(channel, s.max_channel_name_length):
        raise SubscriptionError(None, "The channel name is not allowed.", wire.UNAUTHORIZED)
    kind = kind_of(channel)
    if kind is Kind.SERVER_TO_USER and (
        sock.user_id is None or server_to_user_id(channel) != sock.user_id
    ):
        # Pusher reserves ``#server-to-user-{id}`` for the socket signed in as that user (§1.7;
        # Reverb refuses it likewise): a socket that has not signed in, or signed in as
        # another user, may not listen to a user's private messages.
        raise SubscriptionError(
            "AuthError",
            "Sign in as this user (pusher:signin) before subscribing to its channel.",
            wire.UNAUTHORIZED,
        )
    if not needs_auth(kind):
        return None
    auth = data.get("auth")
    channel_data = data.get("channel_data") if kind is Kind.PRESENCE else None
    if kind is Kind.PRESENCE and not isinstance(channel_data, str):
        raise SubscriptionError("AuthError", "Presence channels need channel_data.", 401)
    if not isinstance(auth, str) or not channel_auth_ok(
        auth,
        key=s.key,
        secret=s.secret,
        socket_id=sock.socket_id,
        channel=channel,
        channel_data=channel_data,
    ):
        raise SubscriptionError("AuthError", "The connection is unauthorized.", 401)
    if kind is not Kind.PRESENCE:
        return None
    assert channel_data is not None
    try:
        member = orjson.loads(channel_data)
    except orjson.JSONDecodeError:
        member = None
    if not isinstance(member, dict) or member.get("user_id") in (None, ""):
        raise SubscriptionError(
            "ServerError", "channel_data must be JSON with a user_id.", wire.SERVER_ERROR
        )
    user_id, user_info = member["user_id"], member.get("user_info")
    # Pusher's user_id is a string; the SDKs also pass integers through (and pusher-js keys
    # members by ``String(user_id)``), so both are kept as given. Objects, lists, booleans and
    # floats have no stable string form (a Python repr would leak into ids and webhooks):
    # refused, as a malformed channel_data is (§1.5 step 3).
    if not (
        isinstance(user_id, str) or (isinstance(user_id, int) and not isinstance(user_id, bool))
    ):
        raise SubscriptionError(
            "ServerError", "channel_data.user_id must be a string.", wire.SERVER_ERROR
        )
    encoded_info = wire.encode_client_value(user_info)
    if encoded_info is None:
        raise SubscriptionError(
            "ServerError", "channel_data.user_info is nested too deeply.", wire.SERVER_ERROR
        )
    if len(encoded_info) > s.max_presence_member_size_in_kb * 1024:
        raise SubscriptionError(
            "LimitReached",
            f"The maximum size for a channel member is {s.max_presence_member_size_in_kb} KB.",
            wire.CLIENT_EVENT_REJECTED,
        )
    # A further socket of a member already present does not count (soketi refuses it: §1.5).
    # On a cluster the members of every node count: checked by ``app.join``.
    if (
        app.cluster is None
        and not app.presence.has_user(channel, user_id)
        and app.presence.user_count(channel) >= s.max_presence_members_per_channel
    ):
        raise presence_full()
    return user_id, user_info


def _signin(app: PusherAppState, sock: PusherSocket, data: Any) -> Awaitable[None] | None:
    """``pusher:signin`` (§1.7), processed whether or not user authentication is required."""
    s = app.settings
    auth = data.get("auth") if isinstance(data, dict) else None
    user_data = data.get("user_data") if isinstance(data, dict) else None
    if not (
        isinstance(auth, str)
        and isinstance(user_data, str)
        and user_auth_ok(
            auth, key=s.key, secret=s.secret, socket_id=sock.socket_id, user_data=user_data
        )
    ):
        raise ProtocolError(wire.UNAUTHORIZED, "Connection not authorized.", True)
    try:
        user = orjson.loads(user_data)
    except orjson.JSONDecodeError:
        user = None
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or user_id == "":
        raise ProtocolError(wire.UNAUTHORIZED, "The user data must have an id.", True)
    assert isinstance(user, dict)
    watchlist: tuple[str, ...] = ()
    if app.watchlists.enabled:
        parsed = parse_watchlist(user)
        if isinstance(parsed, str):
            raise ProtocolError(wire.UNAUTHORIZED, parsed, True)
        watchlist = parsed
    success = wire.signin_success(auth, user_data)
    pending = app.sign_in(sock, str(user_id), watchlist)
    if pending is None and not watchlist:
        app.send(sock, success)
        return None
    return _send_after(app, sock, pending, success)


async def _send_after(
    app: PusherAppState, sock: PusherSocket, pending: Awaitable[None] | None, payload: bytes
) -> None:
    if pending is not None:
        await pending
    app.send(sock, payload)
    await app.watchlists.initial(sock)  # the watched users online now (watchlist events)


def _client_event(app: PusherAppState, sock: PusherSocket, msg: wire.Incoming) -> None:
    """soketi's checks in order (§1.6), restricted to private/presence channels as Pusher."""
    s = app.settings
    if not s.enable_client_messages:
        raise ProtocolError(
            wire.CLIENT_EVENT_REJECTED, "The app does not have client messaging enabled."
        )
    channel = msg.channel
    if channel is None or not allows_client_events(kind_of(channel)):
        raise ProtocolError(
            wire.CLIENT_EVENT_REJECTED,
            "Client events can only be sent to private or presence channels.",
        )
    if len(msg.event) > s.max_event_name_length:
        raise ProtocolError(
            wire.CLIENT_EVENT_REJECTED,
            f"Event name is too long. Maximum allowed size is {s.max_event_name_length}.",
        )
    encoded_data = wire.encode_client_value(msg.data)
    if encoded_data is None:
        raise ProtocolError(wire.CLIENT_EVENT_REJECTED, "The event data is nested too deeply.")
    if len(encoded_data) > s.max_event_payload_in_kb * 1024:
        raise ProtocolError(
            wire.CLIENT_EVENT_REJECTED,
            f"The event data should be less than {s.max_event_payload_in_kb} KB.",
        )
    if channel not in sock.conn.channels:
        raise ProtocolError(
            wire.CLIENT_EVENT_REJECTED, f"The client is not subscribed to {channel}."
        )
    if s.max_client_events_per_sec >= 0:
        now = app.node.now_ms()
        if now - sock.rate_window_ms >= 1000:
            sock.rate_window_ms, sock.rate_count = now, 0
        if sock.rate_count >= s.max_client_events_per_sec:
            raise ProtocolError(
                wire.CLIENT_EVENT_REJECTED,
                "The rate limit for sending client events exceeded the quota.",
            )
        sock.rate_count += 1
    user_id = sock.presence.get(channel)
    payload = wire.channel_event(msg.event, channel, msg.data, user_id)
    app.broadcast_everywhere(channel, payload, sock)
    if app.webhooks.wants("client_event"):
        event: dict[str, Any] = {
            "name": "client_event",
            "channel": channel,
            "event": msg.event,
            # Pusher sends the data as a JSON string, soketi the client's object (§4.1): the
            # app's ``webhook_client_event_data`` decides (issue 17 case 4).
            "data": msg.data
            if isinstance(msg.data, str) or s.webhook_client_event_data == "object"
            else encoded_data.decode(),
            "socket_id": sock.socket_id,
        }
        if user_id is not None:
            event["user_id"] = user_id  # as the member gave it (case 3)
        app.webhooks.emit(event)


def sweep(app: PusherAppState, now_ms: int) -> None:
    """Keep-alive and user-auth deadlines, about once a second (§1.7, §1.9).

    After ``activity_timeout_s`` without a frame from the client we send ``pusher:ping``; if
    nothing arrives within ``pong_timeout_s`` after it, the socket is closed with 4201.
    """
    s = app.settings
    idle_ms = s.activity_timeout_s * 1000
    pong_ms = s.pong_timeout_s * 1000
    for sock in list(app.sockets.values()):
        if sock.auth_deadline_ms is not None and now_ms >= sock.auth_deadline_ms:
            sock.auth_deadline_ms = None
            app.close_with_error(
                sock, wire.UNAUTHORIZED, "Connection not authorized within timeout."
            )
            continue
        if sock.ping_sent_ms is not None:
            if now_ms - sock.ping_sent_ms >= pong_ms:
                sock.conn.sink.close(wire.PONG_TIMEOUT, "Pong reply not received")
        elif now_ms - sock.last_seen_ms >= idle_ms:
            sock.ping_sent_ms = now_ms
            app.send(sock, wire.ping())
    app.purge_cache(now_ms)
