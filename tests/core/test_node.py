"""The per-process node and connections (core/node.py, core/connection.py)."""

from __future__ import annotations

import base64
import re

import pytest

from sockway.core.connection import Connection, SendResult, State
from sockway.core.frames import encode_text_frame
from sockway.core.ids import ChannelName, ConnectionId, aws_style_id
from sockway.core.node import SLOW_CONSUMER_CLOSE, Node

OUTBOX = 1024
ROOM = ChannelName("room")


class FakeClock:
    def __init__(self, now: float = 1_731_324_924.561) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


class RecordingSink:
    """A FrameSink test double: records writes and closes; the buffer is set by the test."""

    def __init__(self, buffered: int = 0) -> None:
        self.frames: list[bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.cuts: list[tuple[int, str]] = []  # dropped at once (slow consumers)
        self.buffered = buffered

    def write_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def buffered_bytes(self) -> int:
        return self.buffered

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def cut(self, code: int, reason: str) -> None:
        self.cuts.append((code, reason))


def make_conn(
    conn_id: str = "BFHPhfCWIAMCKlQ=",
    *,
    api: str = "chat",
    sink: RecordingSink | None = None,
    outbox_max_bytes: int = OUTBOX,
) -> Connection:
    return Connection(
        id=ConnectionId(conn_id),
        api_name=api,
        sink=sink or RecordingSink(),
        connected_at_ms=1_731_324_924_553,
        source_ip="203.0.113.10",
        user_agent=None,
        outbox_max_bytes=outbox_max_bytes,
    )


def sink_of(conn: Connection) -> RecordingSink:
    assert isinstance(conn.sink, RecordingSink)
    return conn.sink


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(clock: FakeClock) -> Node:
    return Node(clock)


def opened(node: Node, conn: Connection) -> Connection:
    node.add(conn)
    node.open(conn)
    return conn


# -- ids (spec §1.5) ----------------------------------------------------------------------


def test_aws_style_ids() -> None:
    ids = {aws_style_id() for _ in range(2000)}  # several refills
    assert len(ids) == 2000
    for value in ids:
        assert len(value) == 16
        assert value.endswith("=")
        assert re.fullmatch(r"[A-Za-z0-9_\-]{15}=", value)
        raw = base64.urlsafe_b64decode(value)
        assert len(raw) == 11
        assert base64.urlsafe_b64encode(raw).decode() == value  # canonical: 11 random bytes
    # every bit is random: each position takes many values, the last character all 16
    assert len({v[14] for v in ids}) == 16
    assert all(len({v[i] for v in ids}) > 50 for i in range(14))


# -- Connection -------------------------------------------------------------------------


def test_new_connection_is_connecting() -> None:
    conn = make_conn()
    assert conn.state is State.CONNECTING
    assert conn.channels == set()
    assert conn.authorizer is None


def test_connection_identity_is_the_object() -> None:
    sink = RecordingSink()
    a = make_conn(sink=sink)
    b = make_conn(sink=sink)
    assert a == a
    assert a != b
    assert len({a, b}) == 2
    assert {a: 1, b: 2}[a] == 1
    b.state = State.OPEN
    a.channels = {ROOM}
    assert a in {a}  # hash does not depend on mutable fields


def test_send_text_gone_while_connecting() -> None:
    conn = make_conn()
    assert conn.send_text(b"hi", 1) is SendResult.GONE
    assert sink_of(conn).frames == []


def test_send_text_gone_when_closed() -> None:
    conn = make_conn()
    conn.state = State.CLOSED
    assert conn.send_text(b"hi", 1) is SendResult.GONE
    assert sink_of(conn).frames == []


def test_send_text_sent_writes_one_frame_and_marks_activity() -> None:
    conn = make_conn()
    conn.state = State.OPEN
    assert conn.send_text(b"hello", 42) is SendResult.SENT
    assert sink_of(conn).frames == [encode_text_frame(b"hello")]
    assert conn.last_active_ms == 42


def test_send_text_outbox_full_writes_nothing_and_does_not_close() -> None:
    sink = RecordingSink(buffered=OUTBOX + 1)
    conn = make_conn(sink=sink)
    conn.state = State.OPEN
    assert conn.send_text(b"hi", 42) is SendResult.OUTBOX_FULL
    assert sink.frames == []
    assert sink.closes == []
    assert conn.last_active_ms == 0
    assert conn.state is State.OPEN


def test_outbox_bound_applies_to_what_is_already_queued() -> None:
    # connection.py: memory per connection stays <= outbox_max_bytes + one message.
    sink = RecordingSink(buffered=OUTBOX)
    conn = make_conn(sink=sink)
    conn.state = State.OPEN
    assert conn.send_text(b"x" * 100, 1) is SendResult.SENT
    sink.buffered = OUTBOX + 1
    assert conn.send_text(b"x", 2) is SendResult.OUTBOX_FULL
    assert len(sink.frames) == 1


def test_frame_larger_than_the_bound_goes_to_a_client_that_keeps_up() -> None:
    conn = make_conn(outbox_max_bytes=100)
    conn.state = State.OPEN
    assert conn.send_text(b"x" * 1000, 1) is SendResult.SENT
    assert sink_of(conn).frames == [encode_text_frame(b"x" * 1000)]


def test_send_text_sent_again_once_the_buffer_drains() -> None:
    sink = RecordingSink(buffered=10 * OUTBOX)
    conn = make_conn(sink=sink)
    conn.state = State.OPEN
    assert conn.send_text(b"a", 1) is SendResult.OUTBOX_FULL
    sink.buffered = 0
    assert conn.send_text(b"b", 2) is SendResult.SENT
    assert sink.frames == [encode_text_frame(b"b")]


def test_send_frame_writes_the_given_bytes_unchanged() -> None:
    conn = make_conn()
    conn.state = State.OPEN
    frame = encode_text_frame(b"x")
    assert conn.send_frame(frame, 5) is SendResult.SENT
    assert sink_of(conn).frames[0] is frame


# -- registry ---------------------------------------------------------------------------


def test_add_get_open(node: Node, clock: FakeClock) -> None:
    conn = make_conn()
    node.add(conn)
    assert node.get("chat", conn.id) is conn
    assert conn.state is State.CONNECTING
    clock.now += 2.5
    node.open(conn)
    assert conn.state is State.OPEN
    assert conn.last_active_ms == int(clock.now * 1000)
    assert node.now_ms() == int(clock.now * 1000)


def test_get_is_scoped_to_the_api(node: Node) -> None:
    conn = make_conn(api="chat")
    node.add(conn)
    assert node.get("other", conn.id) is None
    assert node.get("chat", "unknown=") is None


def test_connections_and_count(node: Node) -> None:
    a = make_conn("a", api="chat")
    b = make_conn("b", api="chat")
    c = make_conn("c", api="other")
    for conn in (a, b, c):
        node.add(conn)
    assert node.count() == 3
    assert set(node.connections()) == {a, b, c}
    assert set(node.connections("chat")) == {a, b}
    assert list(node.connections("other")) == [c]
    assert list(node.connections("none")) == []


def test_connections_may_be_removed_while_iterating(node: Node) -> None:
    conns = [make_conn(str(i)) for i in range(5)]
    for conn in conns:
        node.add(conn)
    for conn in node.connections():
        node.remove(conn)
    assert node.count() == 0


def test_remove_forgets_and_closes(node: Node) -> None:
    conn = opened(node, make_conn())
    node.remove(conn)
    assert conn.state is State.CLOSED
    assert node.get("chat", conn.id) is None
    assert node.count() == 0
    assert conn.send_text(b"late", 1) is SendResult.GONE
    node.remove(conn)  # idempotent
    assert node.count() == 0


# -- channels -----------------------------------------------------------------------------


def test_join_members_leave(node: Node) -> None:
    a = opened(node, make_conn("a"))
    b = opened(node, make_conn("b"))
    node.join(a, ROOM)
    node.join(b, ROOM)
    node.join(a, ROOM)  # joining twice is one membership
    assert set(node.members("chat", ROOM)) == {a, b}
    assert len(node.members("chat", ROOM)) == 2
    assert a.channels == {ROOM}
    assert node.leave(a, ROOM) is True
    assert node.members("chat", ROOM) == [b]
    assert a.channels == set()
    assert node.leave(a, ROOM) is False
    assert node.leave(b, ROOM) is True
    assert node.members("chat", ROOM) == []


def test_leave_unknown_channel(node: Node) -> None:
    conn = opened(node, make_conn())
    assert node.leave(conn, ChannelName("never")) is False


def test_channels_are_per_api(node: Node) -> None:
    a = opened(node, make_conn("a", api="chat"))
    b = opened(node, make_conn("b", api="other"))
    node.join(a, ROOM)
    node.join(b, ROOM)
    assert node.members("chat", ROOM) == [a]
    assert node.members("other", ROOM) == [b]


def test_members_returns_a_copy(node: Node) -> None:
    a = opened(node, make_conn("a"))
    node.join(a, ROOM)
    members = node.members("chat", ROOM)
    members.clear()
    assert node.members("chat", ROOM) == [a]


def test_join_allowed_while_connecting(node: Node) -> None:
    conn = make_conn()
    node.add(conn)
    node.join(conn, ROOM)
    assert node.members("chat", ROOM) == [conn]


def test_join_refused_when_closed(node: Node) -> None:
    conn = opened(node, make_conn())
    node.remove(conn)
    with pytest.raises(ValueError, match="closed"):
        node.join(conn, ROOM)
    assert node.members("chat", ROOM) == []


def test_remove_ends_every_membership(node: Node) -> None:
    a = opened(node, make_conn("a"))
    b = opened(node, make_conn("b"))
    lobby = ChannelName("lobby")
    node.join(a, ROOM)
    node.join(a, lobby)
    node.join(b, ROOM)
    node.remove(a)
    assert node.members("chat", ROOM) == [b]
    assert node.members("chat", lobby) == []
    assert a.channels == set()
    assert node.publish("chat", lobby, b"x") == (0, 0)
    assert sink_of(a).frames == []


# -- publish ------------------------------------------------------------------------------


def test_publish_encodes_once_and_writes_to_every_open_member(node: Node, clock: FakeClock) -> None:
    members = [opened(node, make_conn(str(i))) for i in range(5)]
    outsider = opened(node, make_conn("outsider"))
    for conn in members:
        node.join(conn, ROOM)
    clock.now += 1
    assert node.publish("chat", ROOM, b'{"msg":"hi"}') == (5, 0)
    frames = [sink_of(conn).frames for conn in members]
    assert all(len(f) == 1 for f in frames)
    first = frames[0][0]
    assert first == encode_text_frame(b'{"msg":"hi"}')
    assert all(f[0] is first for f in frames)  # the same bytes object: encoded once
    assert all(conn.last_active_ms == int(clock.now * 1000) for conn in members)
    assert sink_of(outsider).frames == []


def test_publish_skips_connecting_members(node: Node) -> None:
    ready = opened(node, make_conn("ready"))
    pending = make_conn("pending")
    node.add(pending)
    node.join(ready, ROOM)
    node.join(pending, ROOM)
    assert node.publish("chat", ROOM, b"x") == (1, 0)
    assert sink_of(pending).frames == []
    assert sink_of(pending).closes == []
    node.open(pending)
    assert node.publish("chat", ROOM, b"y") == (2, 0)
    assert sink_of(pending).frames == [encode_text_frame(b"y")]


def test_publish_to_empty_or_unknown_channel(node: Node) -> None:
    conn = opened(node, make_conn())
    assert node.publish("chat", ROOM, b"x") == (0, 0)
    node.join(conn, ROOM)
    node.leave(conn, ROOM)
    assert node.publish("chat", ROOM, b"x") == (0, 0)
    assert node.publish("other", ROOM, b"x") == (0, 0)
    assert sink_of(conn).frames == []


def test_publish_closes_slow_consumers_and_serves_the_rest(node: Node) -> None:
    fast = opened(node, make_conn("fast"))
    slow_sink = RecordingSink(buffered=OUTBOX + 100)
    slow = opened(node, make_conn("slow", sink=slow_sink))
    node.join(fast, ROOM)
    node.join(slow, ROOM)
    assert node.publish("chat", ROOM, b"payload") == (1, 1)
    assert sink_of(fast).frames == [encode_text_frame(b"payload")]
    assert slow_sink.frames == []  # never allowed to grow memory
    assert slow_sink.cuts == [SLOW_CONSUMER_CLOSE]
    assert SLOW_CONSUMER_CLOSE == (1008, "Slow consumer: outbox full")


def test_publish_bound_is_per_connection(node: Node) -> None:
    small = opened(node, make_conn("small", sink=RecordingSink(200), outbox_max_bytes=100))
    large = opened(node, make_conn("large", sink=RecordingSink(200), outbox_max_bytes=10_000))
    node.join(small, ROOM)
    node.join(large, ROOM)
    assert node.publish("chat", ROOM, b"x") == (1, 1)
    assert sink_of(small).cuts == [SLOW_CONSUMER_CLOSE]
    assert sink_of(large).frames == [encode_text_frame(b"x")]
    assert sink_of(large).cuts == []


def test_slow_consumer_sink_may_remove_the_connection_on_close(node: Node) -> None:
    # A transport may call back into the node from close(); publish must tolerate it.
    class RemovingSink(RecordingSink):
        conn: Connection | None = None

        def cut(self, code: int, reason: str) -> None:
            super().cut(code, reason)
            assert self.conn is not None
            node.remove(self.conn)

    sink = RemovingSink(buffered=OUTBOX * 2)
    slow = opened(node, make_conn("slow", sink=sink))
    sink.conn = slow
    other = opened(node, make_conn("other"))
    node.join(slow, ROOM)
    node.join(other, ROOM)
    assert node.publish("chat", ROOM, b"x") == (1, 1)
    assert node.members("chat", ROOM) == [other]
    assert slow.state is State.CLOSED


def test_publish_large_payload_frame(node: Node) -> None:
    conn = opened(node, make_conn(outbox_max_bytes=1 << 20))
    node.join(conn, ROOM)
    payload = b"z" * 70_000
    assert node.publish("chat", ROOM, payload) == (1, 0)
    assert sink_of(conn).frames == [encode_text_frame(payload)]


def test_idle_connections_share_one_empty_channel_set(node: Node) -> None:
    """Memory per idle connection (bench idle row): no set of its own until it joins."""
    a, b = make_conn(), make_conn()
    assert a.channels is b.channels
    node.add(a)
    node.join(a, ROOM)
    assert a.channels == {ROOM} and not b.channels
    node.remove(a)
    assert a.channels is b.channels


def test_slow_consumer_is_dropped_and_counted_once(node: Node) -> None:
    # Issue 13 item 11: over its bound, a member gets nothing more and is counted by the
    # publication that found it only, not by every broadcast until its transport ends.
    slow_sink = RecordingSink(buffered=OUTBOX + 1)
    slow = opened(node, make_conn("slow", sink=slow_sink))
    other = opened(node, make_conn("other"))
    node.join(slow, ROOM)
    node.join(other, ROOM)
    assert node.publish("chat", ROOM, b"1") == (1, 1)
    assert slow.state is State.CLOSING and slow.gone
    assert node.publish("chat", ROOM, b"2") == (1, 0)
    assert slow_sink.cuts == [SLOW_CONSUMER_CLOSE]
    assert slow.send_text(b"3", 0) is SendResult.GONE
    with pytest.raises(ValueError):
        node.join(slow, ChannelName("other-room"))
    node.remove(slow)
    assert slow.state is State.CLOSED
    assert node.members("chat", ROOM) == [other]


class FailingSink(RecordingSink):
    def write_frame(self, frame: bytes) -> None:
        raise OSError("boom")


def test_a_failing_member_never_stops_the_fan_out(node: Node) -> None:
    members = [opened(node, make_conn(f"m{i}")) for i in range(3)]
    broken = opened(node, make_conn("broken", sink=FailingSink()))
    for conn in [*members, broken]:
        node.join(conn, ROOM)
    assert node.publish("chat", ROOM, b"x") == (3, 0)
    assert all(sink_of(c).frames == [encode_text_frame(b"x")] for c in members)
    assert sink_of(broken).cuts == [(1011, "Internal error")]
    assert broken.gone


def test_a_closing_member_is_skipped_until_removed(node: Node) -> None:
    a, b = opened(node, make_conn("a")), opened(node, make_conn("b"))
    node.join(a, ROOM)
    node.join(b, ROOM)
    node.closing(a)
    assert node.publish("chat", ROOM, b"x") == (1, 0)
    assert sink_of(a).frames == []
    assert set(node.members("chat", ROOM)) == {a, b}  # its front door's cleanup leaves
    node.remove(a)
    assert node.members("chat", ROOM) == [b]
