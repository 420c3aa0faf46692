"""Failures that must not lose anything (issue 4 "Bad input ..."): handler crashes and timeouts
get the spec's error reply and the connection keeps working; a subscriber that does not read is
disconnected without holding up delivery to the others (appsync-events spec §2.6, §6.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import websockets

from tests.conftest import StartGateway, write_handlers
from tests.e2e.appsync_support import (
    API_KEY,
    SUBPROTOCOL,
    EventsClient,
    events_api,
    header_subprotocol,
)
from tests.e2e.support import wait_until

FAULTY = """
import time


def crash(event, context):
    raise RuntimeError("bug on purpose")


def slow(event, context):
    time.sleep(1)
    return {"events": event["events"]}


def chatty_subscribe(event, context):
    return {"ok": True}  # any non-null answer fails the subscription (PT-TS #3884)
"""


async def test_handler_crash_and_timeout_answer_and_keep_working(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = write_handlers(tmp_path / "fns", {"faulty.py": FAULTY})
    api = events_api(
        code,
        namespaces={
            "crash": {"on_publish": "faulty.crash", "on_subscribe": "faulty.crash"},
            "slow": {"on_publish": {"handler": "faulty.slow", "timeout_s": 0.2}},
            "chatty": {"on_subscribe": "faulty.chatty_subscribe"},
            "default": None,
        },
    )
    gw = await start_gateway({"apis": [api]})
    c = await EventsClient.connect(gw.port)
    unable = {"errorType": "HandlerExecutionError", "message": "Unable to process request"}
    assert await c.publish("p1", "/crash/a", [1]) == {
        "type": "publish_error",
        "id": "p1",
        "errors": [unable],
    }
    assert await c.publish("p2", "/slow/a", [1]) == {
        "type": "publish_error",
        "id": "p2",
        "errors": [unable],
    }
    assert await c.subscribe("s1", "/crash/a") == {
        "type": "subscribe_error",
        "id": "s1",
        "errors": [unable],
    }
    assert await c.subscribe("s2", "/chatty/a") == {
        "type": "subscribe_error",
        "id": "s2",
        "errors": [unable],
    }
    # The failed ids were never taken; the connection still works.
    assert (await c.subscribe("s1", "/default/a"))["type"] == "subscribe_success"
    assert await c.publish("p3", "/default/a", ["ok"]) == {
        "type": "data",
        "id": "s1",
        "event": '"ok"',
    }
    await c.close()


async def test_a_subscriber_that_does_not_read_is_dropped_not_waited_for(
    start_gateway: StartGateway,
) -> None:
    api = events_api(limits={"outbox_max_bytes": 64 * 1024, "max_publishes_per_second": 1000})
    gw = await start_gateway({"apis": [api]})
    host = f"127.0.0.1:{gw.port}"
    # max_queue=1: the client library stops reading the socket once one frame is queued.
    stuck = await websockets.connect(
        f"ws://{host}/event/realtime",
        subprotocols=[SUBPROTOCOL, header_subprotocol({"host": host, "x-api-key": API_KEY})],  # type: ignore[list-item]
        max_queue=1,
        max_size=None,
    )
    await stuck.send(
        json.dumps(
            {
                "type": "subscribe",
                "id": "stuck",
                "channel": "/default/big",
                "authorization": {"x-api-key": API_KEY},
            }
        )
    )
    reader = await EventsClient.connect(gw.port)
    assert (await reader.subscribe("r", "/default/*"))["type"] == "subscribe_success"
    publisher = await EventsClient.connect(gw.port)
    big = "x" * (200 * 1024)
    received = 0
    rounds = 0
    while gw.metrics.slow_consumers.labels("ev")._value.get() == 0:
        rounds += 1
        assert rounds < 200, "the stuck subscriber was never disconnected"
        await publisher.send(
            {
                "type": "publish",
                "id": f"p{rounds}",
                "channel": "/default/big",
                "events": [json.dumps(big)],
                "authorization": {"x-api-key": API_KEY},
            }
        )
        frame = await reader.recv()
        assert frame["id"] == "r" and json.loads(frame["event"]) == big
        received += 1
        assert (await publisher.recv())["type"] == "publish_success"
    assert received == rounds
    # The stuck connection is gone from the gateway.
    await wait_until(lambda: sum(1 for _ in gw.node.connections("ev")) == 2, timeout=10)
    await reader.close()
    await publisher.close()
    stuck.transport.abort()  # type: ignore[attr-defined]


ORDERED = """
import time


def on_publish(event, context):
    time.sleep(event["events"][0]["payload"]["sleep"])
    return {"events": event["events"]}
"""


async def test_publish_order_is_kept_when_handlers_finish_out_of_order(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = write_handlers(tmp_path / "fns", {"ordered.py": ORDERED})
    gw = await start_gateway(
        {"apis": [events_api(code, namespaces={"default": {"on_publish": "ordered.on_publish"}})]}
    )
    sub = await EventsClient.connect(gw.port)
    assert (await sub.subscribe("s", "/default/*"))["type"] == "subscribe_success"
    pub = await EventsClient.connect(gw.port)
    auth = {"x-api-key": API_KEY}
    # The first publication's handler takes longest; both are in flight at once.
    for n, sleep in enumerate([0.5, 0.0, 0.2]):
        await pub.send(
            {
                "type": "publish",
                "id": f"p{n}",
                "channel": "/default/a",
                "events": [json.dumps({"n": n, "sleep": sleep})],
                "authorization": auth,
            }
        )
    replies = [await pub.recv() for _ in range(3)]
    assert {r["id"] for r in replies} == {"p0", "p1", "p2"}
    got = [json.loads((await sub.recv())["event"])["n"] for _ in range(3)]
    assert got == [0, 1, 2]
    # Another channel is not held up by a slow one.
    await pub.send(
        {
            "type": "publish",
            "id": "slow",
            "channel": "/default/a",
            "events": [json.dumps({"n": 9, "sleep": 1.0})],
            "authorization": auth,
        }
    )
    assert (await pub.publish("fast", "/default/b", [{"n": 10, "sleep": 0}]))["id"] == "fast"
    assert json.loads((await sub.recv())["event"])["n"] == 10
    assert json.loads((await sub.recv())["event"])["n"] == 9


INFLATE = """
def on_publish(event, context):
    return {"events": [{"id": e["id"], "payload": "x" * e["payload"]} for e in event["events"]]}
"""


async def test_an_event_made_too_large_by_its_handler_gets_broadcast_error(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = write_handlers(tmp_path / "fns", {"inflate.py": INFLATE})
    api = events_api(
        code,
        namespaces={"default": {"on_publish": "inflate.on_publish"}},
        limits={"max_event_bytes": 1000},
    )
    gw = await start_gateway({"apis": [api]})
    c = await EventsClient.connect(gw.port)
    assert (await c.subscribe("s", "/default/*"))["type"] == "subscribe_success"
    await c.send(
        {
            "type": "publish",
            "id": "p",
            "channel": "/default/a",
            "events": ["2000", "3"],
            "authorization": {"x-api-key": API_KEY},
        }
    )
    assert await c.recv() == {
        "type": "broadcast_error",
        "id": "s",
        "errors": [
            {
                "errorType": "MessageProcessingError",
                "message": "There was an error processing the message",
            }
        ],
    }
    assert await c.recv() == {"type": "data", "id": "s", "event": '"xxx"'}
    assert (await c.recv())["type"] == "publish_success"


async def test_publish_rate_per_connection(start_gateway: StartGateway) -> None:
    gw = await start_gateway({"apis": [events_api(limits={"max_publishes_per_second": 1})]})
    c = await EventsClient.connect(gw.port)
    for n in range(3):
        await c.send(
            {
                "type": "publish",
                "id": f"p{n}",
                "channel": "/default/a",
                "events": ["1"],
                "authorization": {"x-api-key": API_KEY},
            }
        )
    replies = [await c.recv() for _ in range(3)]
    # Three requests span at most two one-second windows: at least one is over the limit.
    limited = [r for r in replies if r["type"] == "publish_error"]
    assert limited and all(r["errors"][0]["errorType"] == "LimitExceededError" for r in limited)
    assert any(r["type"] == "publish_success" for r in replies)


ECHO_PUBLISH = """
def handler(event, context):
    return {"events": [{"id": e["id"], "payload": e["payload"]} for e in event["events"]]}
"""


@pytest.mark.parametrize("runtime", ["inprocess", "process"])
async def test_events_nested_too_deep_for_handlers_are_a_bad_request(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture, runtime: str
) -> None:
    # Issue 13 item 8 (other doors): an event nested 300 deep reached the onPublish handler's
    # event and raised TypeError (orjson writes at most 254 levels): "InternalFailureException"
    # and a traceback. It is the client's fault: BadRequestException, nothing logged as ERROR.
    code = write_handlers(tmp_path / "fns", {"echo_pub.py": ECHO_PUBLISH})
    namespaces = {"default": {"on_publish": {"handler": "echo_pub.handler", "runtime": runtime}}}
    gw = await start_gateway({"apis": [events_api(code_dir=code, namespaces=namespaces)]})
    c = await EventsClient.connect(gw.port)
    for depth in (241, 300, 1000):
        await c.send(
            {
                "type": "publish",
                "id": f"d{depth}",
                "channel": "/default/a",
                "events": ["[" * depth + "]" * depth],
                "authorization": {"x-api-key": API_KEY},
            }
        )
        refused = await c.recv()
        assert refused["type"] == "publish_error", refused
        assert refused["errors"][0]["errorType"] == "BadRequestException"
        assert "nesting" in refused["errors"][0]["message"]
    ok = await c.publish("ok", "/default/a", [json.loads("[" * 240 + "]" * 240)])
    assert ok["type"] == "publish_success", ok
    assert not [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
