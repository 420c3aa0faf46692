"""AppSync Events fan-out past subscribers whose transport already closed (issue 13 item 1).

Run on uvloop, as ``sockway serve`` runs: a write to a transport whose peer reset it raises
``RuntimeError`` from the moment the reset is read until the connection's end is processed.
The resets are put on the wire right before or right after a publication (sockets the test
owns, ``tests/e2e/owned_socket.py``), so the gateway reads both in one poll and the fan-out
meets closed transports: every surviving subscriber gets every event, the HTTP publish (spec
§4, ``POST /event``) answers 200 and the WebSocket ``publish`` (spec §3.5) ``publish_success``,
and nothing is logged as an error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
import pytest
import websockets

from tests.conftest import StartGateway
from tests.e2e.appsync_support import API_KEY, EventsClient, events_api
from tests.e2e.owned_socket import (
    OwnedEvents,
    OwnedSocket,
    http_answer,
    http_post,
    publish_frame,
)

pytestmark = pytest.mark.uvloop

CHANNEL = "/default/feed"
ROUNDS = 40  # even: HTTP publish, odd: WebSocket publish
PER_ROUND = 3  # subscribers reset at each publication
PAD = "p" * 2000  # a few KB per event, so every write is a real one


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every error or traceback logged."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


async def test_events_publish_reaches_survivors_while_subscribers_reset(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    healthy = [await EventsClient.connect(gw.port) for _ in range(3)]
    for c in healthy:
        assert (await c.subscribe("h", CHANNEL))["type"] == "subscribe_success"
    doomed = []
    for i in range(ROUNDS * PER_ROUND):
        # both transports; on aiohttp's the end of a reset connection runs a few loop steps
        # after its transport closed, so a publication read in between meets it closed
        d = await OwnedEvents.connect_events(gw.port, keep_alive=i % 3 != 0)
        await d.subscribe("d1", CHANNEL)  # two subscriptions: two writes per event
        await d.subscribe("d2", "/default/*")
        doomed.append(d)
    # on aiohttp too: its publish runs a loop step after the frame was read (after the resets)
    publisher = await OwnedEvents.connect_events(gw.port, keep_alive=True)
    caplog.set_level(logging.WARNING)
    n = 0
    for round_ in range(ROUNDS):
        batch = doomed[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]
        events = [{"n": n, "pad": PAD}, {"n": n + 1, "pad": PAD}]
        resets_first = round_ // 2 % 2 == 0
        if round_ % 2 == 0:
            body = json.dumps({"channel": CHANNEL, "events": [json.dumps(e) for e in events]})
            request = http_post(
                gw.port,
                "/event",
                body.encode(),
                {"content-type": "application/json", "x-api-key": API_KEY},
            )
            conn = await OwnedSocket.open(gw.port)
            if resets_first:
                for d in batch:
                    d.reset()
            conn.send_now(request)
            if not resets_first:
                for d in batch:
                    d.reset()
            status, answer = await http_answer(conn)
            assert status == 200, answer
            result = json.loads(answer)
            assert result["failed"] == [] and len(result["successful"]) == 2, result
        else:
            frame = json.dumps(publish_frame(f"op{round_}", CHANNEL, events))
            if resets_first:
                for d in batch:
                    d.reset()
            publisher.send_text_now(frame)
            if not resets_first:
                for d in batch:
                    d.reset()
            answer = await publisher.recv()
            assert answer["type"] == "publish_success", answer
            assert answer["failed"] == [] and len(answer["successful"]) == 2, answer
        for c in healthy:
            for expected in (n, n + 1):
                frame_ = await c.recv()
                assert frame_["type"] == "data" and frame_["id"] == "h", frame_
                assert json.loads(frame_["event"])["n"] == expected
        n += 2
    assert problems(caplog) == []
    assert gw.metrics.connections.labels("ev")._value.get() == 4  # the resets all ended
    for c in healthy:
        await c.close()


class FailingWrites:
    """A subscriber's sink whose writes raise (a bug of ours in the write path, injected):
    everything else goes to the real sink."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def write_frame(self, frame: bytes) -> None:
        raise OSError("injected write failure")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


async def test_a_subscriber_whose_write_raises_never_stops_the_events_fan_out(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Like ``Node.publish`` (tests/core/test_node.py): the write is logged once, that
    subscriber is cut off, every other subscriber still gets every event and the publish
    answers 200 (before, the exception left the loop: 500 and the rest got nothing)."""
    gw = await start_gateway({"apis": [events_api()]})
    broken = await EventsClient.connect(gw.port)
    for sub_id, channel in (("b1", CHANNEL), ("b2", "/default/*")):
        assert (await broken.subscribe(sub_id, channel))["type"] == "subscribe_success"
    (conn,) = gw.node.connections("ev")
    conn.sink = FailingWrites(conn.sink)
    healthy = [await EventsClient.connect(gw.port) for _ in range(3)]
    for c in healthy:
        assert (await c.subscribe("h", CHANNEL))["type"] == "subscribe_success"
    caplog.set_level(logging.WARNING)
    for n in (0, 2):  # the second publication finds it gone
        body = {"channel": CHANNEL, "events": [json.dumps({"n": n}), json.dumps({"n": n + 1})]}
        async with aiohttp.ClientSession() as http:
            headers = {"x-api-key": API_KEY}
            async with http.post(
                f"http://127.0.0.1:{gw.port}/event", json=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
        for c in healthy:
            got = [json.loads((await c.recv())["event"])["n"] for _ in range(2)]
            assert got == [n, n + 1]
    assert [r.getMessage() for r in caplog.records] == [f"writing to {conn.id} failed"]
    with pytest.raises(websockets.ConnectionClosed):  # cut off
        while True:
            await broken.recv()
    for c in healthy:
        await c.close()
