"""Pusher frame handling and the keep-alive sweep without sockets, on a fast-forwarded clock
(pusher spec §1.5-§1.9). The transport is the core's FrameSink; time is injected."""

from __future__ import annotations

import json
from typing import Any

import pusher

from sockway.core.connection import Connection
from sockway.core.ids import ConnectionId
from sockway.core.node import Node
from sockway.observability.metrics import Metrics
from sockway.pusher.session import handle_frame, sweep
from sockway.pusher.settings import PusherApp
from sockway.pusher.state import PusherAppState, PusherSocket
from sockway.pusher.webhooks import Webhooks
from tests.core.test_node import FakeClock, RecordingSink

SDK = pusher.Pusher(app_id="1", key="k", secret="s")


def make_app(**settings: Any) -> tuple[PusherAppState, FakeClock]:
    clock = FakeClock(1_700_000_000.0)
    app = PusherApp.model_validate(
        {"name": "p", "type": "pusher", "app_id": "1", "key": "k", "secret": "s", **settings}
    )
    node = Node(clock)
    metrics = Metrics()
    return PusherAppState(app, node, metrics, Webhooks(app, [], metrics, node.now_ms)), clock


def connect(app: PusherAppState, socket_id: str) -> tuple[PusherSocket, RecordingSink]:
    sink = RecordingSink()
    conn = Connection(
        ConnectionId(socket_id), "p", sink, app.node.now_ms(), "127.0.0.1", None, 1 << 20
    )
    app.node.add(conn)
    app.node.open(conn)
    sock = PusherSocket(conn, last_seen_ms=app.node.now_ms())
    app.add(sock)
    return sock, sink


def frames(sink: RecordingSink) -> list[dict[str, Any]]:
    out = []
    for frame in sink.frames:
        n = frame[1] & 0x7F
        start = 2 if n < 126 else 4 if n == 126 else 10
        out.append(json.loads(frame[start:]))
    sink.frames.clear()
    return out


def send(
    app: PusherAppState,
    sock: PusherSocket,
    event: str,
    data: Any = None,
    channel: str | None = None,
) -> None:
    frame: dict[str, Any] = {"event": event, "data": data if data is not None else {}}
    if channel:
        frame["channel"] = channel
    handle_frame(app, sock, json.dumps(frame))


def test_ping_after_silence_then_4201():
    app, clock = make_app(activity_timeout_s=10, pong_timeout_s=5)
    sock, sink = connect(app, "1.1")
    clock.now += 9.9
    sweep(app, app.node.now_ms())
    assert frames(sink) == []
    clock.now += 0.1
    sweep(app, app.node.now_ms())
    assert frames(sink) == [{"event": "pusher:ping", "data": {}}]
    clock.now += 4
    send(app, sock, "pusher:pong")  # alive again
    clock.now += 9
    sweep(app, app.node.now_ms())
    assert sink.closes == [] and frames(sink) == []
    clock.now += 1
    sweep(app, app.node.now_ms())
    assert frames(sink) == [{"event": "pusher:ping", "data": {}}]
    clock.now += 5
    sweep(app, app.node.now_ms())
    assert sink.closes == [(4201, "Pong reply not received")]


def test_user_authentication_deadline():
    app, clock = make_app(enable_user_authentication=True, user_authentication_timeout_s=30)
    lazy, lazy_sink = connect(app, "1.1")
    lazy.auth_deadline_ms = app.node.now_ms() + 30_000
    private, private_sink = connect(app, "2.2")
    private.auth_deadline_ms = app.node.now_ms() + 30_000
    send(
        app,
        private,
        "pusher:subscribe",
        {"channel": "private-a", **SDK.authenticate("private-a", "2.2")},
    )
    clock.now += 30
    sweep(app, app.node.now_ms())
    assert lazy_sink.closes == [(4009, "Connection not authorized within timeout.")]
    assert private_sink.closes == []  # an authorized subscription counts as authenticated


def test_presence_resubscribe_as_another_user_moves_the_member():
    app, _ = make_app()
    a, a_sink = connect(app, "1.1")
    b, b_sink = connect(app, "2.2")
    for sock, user in ((a, "u1"), (b, "u2")):
        send(
            app,
            sock,
            "pusher:subscribe",
            {
                "channel": "presence-r",
                **SDK.authenticate("presence-r", sock.socket_id, {"user_id": user}),
            },
        )
    frames(a_sink)
    frames(b_sink)
    send(
        app,
        b,
        "pusher:subscribe",
        {"channel": "presence-r", **SDK.authenticate("presence-r", "2.2", {"user_id": "u3"})},
    )
    seen = frames(a_sink)
    assert [f["event"] for f in seen] == [
        "pusher_internal:member_removed",
        "pusher_internal:member_added",
    ]
    assert app.presence.snapshot("presence-r")[0] == ["u1", "u3"]
    assert app.subscription_count("presence-r") == 2


def test_cache_expires():
    app, clock = make_app(cache_ttl_s=60)
    app.publish("cache-x", "e", "d", None)
    s1, sink1 = connect(app, "1.1")
    send(app, s1, "pusher:subscribe", {"channel": "cache-x"})
    assert frames(sink1)[1] == {"event": "e", "channel": "cache-x", "data": "d"}
    clock.now += 60
    s2, sink2 = connect(app, "2.2")
    send(app, s2, "pusher:subscribe", {"channel": "cache-x"})
    assert frames(sink2)[1] == {"event": "pusher:cache_miss", "channel": "cache-x"}


def test_client_event_rate_window_is_per_second():
    app, clock = make_app(enable_client_messages=True, max_client_events_per_sec=1)
    a, a_sink = connect(app, "1.1")
    send(
        app, a, "pusher:subscribe", {"channel": "private-c", **SDK.authenticate("private-c", "1.1")}
    )
    frames(a_sink)
    send(app, a, "client-x", {}, "private-c")
    send(app, a, "client-x", {}, "private-c")
    assert frames(a_sink)[0]["data"]["code"] == 4301
    clock.now += 1
    send(app, a, "client-x", {}, "private-c")
    assert frames(a_sink) == []
