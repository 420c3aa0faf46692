"""Property-based fuzz of each front door's message handling over a live socket (issue 13,
standing test B).

A real gateway runs on its own thread and event loop for the module; hypothesis drives a
synchronous ``websockets`` client against it. For every generated message the property is:
the server answers it — the websocket API echoes it (its ``$default`` route), the AppSync door
answers every operation, and a Pusher socket (which answers some events with silence, as
Pusher does) still answers the ``pusher:ping`` sent right after — or it closes the connection
with a code that message deserves (1003 for binary on the websocket API, Pusher's 4000-4999
codes); and nothing is logged at ERROR or with a traceback (an unhandled exception anywhere in
the gateway, a handler, or asyncio's "Task exception was never retrieved").

Bounded: ``EXAMPLES`` messages per door, each answered within ``ANSWER_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from sockway.gateway.config import parse_config
from sockway.gateway.gateway import Gateway
from tests.e2e.appsync_support import API_KEY, SUBPROTOCOL, header_subprotocol
from tests.e2e.conformance_support import conformance_apis
from tests.e2e.pusher_support import KEY

EXAMPLES = 60
ANSWER_TIMEOUT_S = 10.0
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a failure here is reproducible
)


class _Problems(logging.Handler):
    """Every record at ERROR or above, or carrying a traceback, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def take(self) -> list[str]:
        found = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in self.records]
        self.records.clear()
        return found


class LiveGateway:
    """A gateway on a thread of its own (hypothesis calls the test synchronously)."""

    def __init__(self, tmp: Path) -> None:
        # Module-scoped, so conftest's per-test isolation does not cover it: the handler
        # modules and sys.path entries this gateway adds are taken back in ``stop``.
        self.tmp = tmp
        self._path = list(sys.path)
        self._environ = dict(os.environ)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = {
            "listen": "127.0.0.1:0",
            "state_dir": str(tmp / "state"),
            "apis": conformance_apis(tmp),
        }
        self.gateway = Gateway(parse_config(config, tmp))
        self._run(self.gateway.start())
        self.port = self.gateway.port

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    def stop(self) -> None:
        try:
            self._run(self.gateway.stop(grace_s=2))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            sys.path[:] = self._path
            os.environ.clear()
            os.environ.update(self._environ)
            for name, module in list(sys.modules.items()):
                if (getattr(module, "__file__", None) or "").startswith(str(self.tmp)):
                    del sys.modules[name]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    gateway = LiveGateway(tmp_path_factory.mktemp("fuzz"))
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def problems(live: LiveGateway) -> Iterator[_Problems]:
    handler = _Problems()
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(min(previous, logging.INFO) if previous else logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


# -- strategies ---------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


NASTY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "null",
        "[]",
        "{}",
        '{"action":null}',
        '{"action":"$connect"}',
        '{"action":"$disconnect"}',
        '"\\ud800"',
        "\u0000",
        "\ufeff{}",
        '{"a":1e999}',
        '{"a":' + "9" * 5000 + "}",
        _deep(300),
        _deep(1030),
        _deep(5000),
        '{"action":' + _deep(2000) + "}",
        "x" * 20000,
    ]
)
TEXT = st.text(max_size=200) | NASTY_TEXT | JSON.map(json.dumps)


def _pusher_frames() -> st.SearchStrategy[str]:
    events = st.sampled_from(
        [
            "pusher:ping",
            "pusher:pong",
            "pusher:subscribe",
            "pusher:unsubscribe",
            "pusher:signin",
            "pusher:unknown",
            "client-event",
        ]
    ) | st.text(max_size=20)
    channels = st.sampled_from(
        [
            "public",
            "private-a",
            "presence-a",
            "private-encrypted-a",
            "#server-to-user-1",
            "cache-a",
            "",
        ]
    ) | st.text(max_size=30)
    data = JSON | st.fixed_dictionaries(
        {"channel": channels},
        optional={"auth": st.text(max_size=80), "channel_data": TEXT, "user_data": TEXT},
    )
    frame = st.fixed_dictionaries(
        {"event": events}, optional={"data": data | data.map(json.dumps), "channel": channels}
    )
    presence = '{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s",'
    nested = st.sampled_from([100, 251, 300, 1000, 1500]).flatmap(
        lambda depth: st.sampled_from(
            [
                '{"event":"client-event","channel":"private-a","data":' + _deep(depth) + "}",
                presence
                + '"channel_data":"{\\"user_id\\":\\"1\\",\\"user_info\\":'
                + _deep(depth)
                + '}"}}',
                '{"event":"pusher:subscribe","data":' + _deep(depth) + "}",
            ]
        )
    )
    return frame.map(json.dumps) | TEXT | nested


def _events_frames() -> st.SearchStrategy[str]:
    kinds = st.sampled_from(
        ["connection_init", "subscribe", "unsubscribe", "publish", "ka", "start", ""]
    ) | st.text(max_size=12)
    channels = st.sampled_from(
        ["/default/a", "/default/*", "/other/b/c", "/nope/x", "/", ""]
    ) | st.text(max_size=30)
    ids = st.sampled_from(["a", "b-1", "x" * 200]) | st.text(max_size=10)
    auth = st.sampled_from([{"x-api-key": API_KEY}, {"x-api-key": "wrong"}, {}]) | JSON
    frame = st.fixed_dictionaries(
        {"type": kinds},
        optional={
            "id": ids | JSON,
            "channel": channels | JSON,
            "events": st.lists(TEXT, max_size=6) | JSON,
            "authorization": auth,
        },
    )
    return frame.map(json.dumps) | TEXT


# -- connections --------------------------------------------------------------------------


def _recv(ws: ClientConnection) -> str | bytes:
    return ws.recv(timeout=ANSWER_TIMEOUT_S)


def _open(live: LiveGateway, door: str, stack: contextlib.ExitStack) -> ClientConnection:
    base = f"ws://127.0.0.1:{live.port}"
    if door == "websocket":
        return stack.enter_context(connect(f"{base}/dev", max_size=None, open_timeout=10))
    if door == "pusher":
        ws = stack.enter_context(
            connect(f"{base}/app/{KEY}?protocol=7", max_size=None, open_timeout=10)
        )
        assert "connection_established" in str(_recv(ws))
        return ws
    headers = {"host": f"127.0.0.1:{live.port}", "x-api-key": API_KEY}
    ws = stack.enter_context(
        connect(
            f"{base}/event/realtime",
            subprotocols=[SUBPROTOCOL, header_subprotocol(headers)],  # type: ignore[list-item]
            max_size=None,
            open_timeout=10,
        )
    )
    ws.send('{"type":"connection_init"}')
    assert "connection_ack" in str(_recv(ws))
    return ws


class _Socket:
    """One client socket per door, reopened after the server closed it."""

    def __init__(self, live: LiveGateway, door: str) -> None:
        self.live, self.door = live, door
        self.ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()

    def get(self) -> ClientConnection:
        if self.ws is None:
            self.ws = _open(self.live, self.door, self._stack)
        return self.ws

    def closed(self) -> None:
        self._stack.close()
        self.ws = None


def _close_code(exc: ConnectionClosed) -> int | None:
    return exc.rcvd.code if exc.rcvd is not None else None


def _check_logs(problems: _Problems) -> None:
    found = problems.take()
    assert not found, found


# -- the properties -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sockets(live: LiveGateway) -> Iterator[dict[str, _Socket]]:
    opened = {door: _Socket(live, door) for door in ("websocket", "pusher", "events")}
    yield opened
    for sock in opened.values():
        sock.closed()


@FUZZ
@given(message=TEXT | st.binary(max_size=64))
def test_websocket_api_answers_every_message(
    sockets: dict[str, _Socket], problems: _Problems, message: str | bytes
) -> None:
    sock = sockets["websocket"]
    ws = sock.get()
    try:
        ws.send(message)
        answer = _recv(ws)
    except ConnectionClosed as exc:
        sock.closed()
        # API Gateway refuses binary frames with 1003; nothing else may close the socket.
        assert isinstance(message, bytes) and _close_code(exc) == 1003, (message, exc)
    else:
        assert isinstance(message, str), "a binary message was answered"
        if message == "":
            assert answer in ("", b""), answer
        else:
            assert answer == message, (message[:80], str(answer)[:80])
    _check_logs(problems)


@FUZZ
@given(message=_pusher_frames())
def test_pusher_answers_every_message(
    sockets: dict[str, _Socket], problems: _Problems, message: str
) -> None:
    sock = sockets["pusher"]
    ws = sock.get()
    try:
        ws.send(message)
        ws.send('{"event":"pusher:ping","data":{}}')
        for _ in range(20):  # the fuzz message's answers (if any), then the pong
            frame = json.loads(_recv(ws))
            assert isinstance(frame, dict) and isinstance(frame.get("event"), str), frame
            if frame["event"] == "pusher:pong":
                break
        else:
            raise AssertionError("no pusher:pong after the message")
    except ConnectionClosed as exc:
        sock.closed()
        code = _close_code(exc)
        assert code is not None and 4000 <= code <= 4999, (message[:200], code)
    _check_logs(problems)


@FUZZ
@given(message=_events_frames())
def test_appsync_events_answers_every_message(
    sockets: dict[str, _Socket], problems: _Problems, message: str
) -> None:
    sock = sockets["events"]
    ws = sock.get()
    try:
        ws.send(message)
        while True:
            frame = json.loads(_recv(ws))
            assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
            if frame["type"] not in ("ka", "data"):
                break  # the answer to the message (data frames precede a publish's answer)
    except ConnectionClosed as exc:
        sock.closed()
        raise AssertionError(f"closed with {_close_code(exc)} after {message[:200]!r}") from None
    _check_logs(problems)
