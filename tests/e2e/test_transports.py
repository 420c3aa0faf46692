"""The two WebSocket transports and the sniffer that chooses between them.

A connection whose first request is the upgrade is served by picows (``transport/picows_ws.py``);
an upgrade that follows a plain request on a keep-alive connection by aiohttp. The behaviour a
client sees must not depend on which: the tests marked ``via`` run against both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sockway.transport import sniffer
from tests.conftest import StartGateway
from tests.e2e.appsync_support import API_KEY, SUBPROTOCOL, events_api, header_subprotocol
from tests.e2e.pusher_support import KEY, pusher_app, sdk
from tests.e2e.rawws import RawClient, read_http_answer
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until

VIA = pytest.mark.parametrize("via", ["picows", "aiohttp"])

HOLD = """
import asyncio

ACTIVE = [0]
PEAK = [0]
EVENTS = []


def connect(event, context):
    EVENTS.append(event)
    return {"statusCode": 200}


def disconnect(event, context):
    EVENTS.append(event)
    return {"statusCode": 200}


async def hold(event, context):
    ACTIVE[0] += 1
    PEAK[0] = max(PEAK[0], ACTIVE[0])
    await asyncio.sleep(0.02)
    ACTIVE[0] -= 1
    return {"statusCode": 200, "body": event["body"]}
"""


NO_SUSPEND = """
async def echo(event, context):
    return {"statusCode": 200, "body": event["body"]}
"""


def _hold_api(tmp_path: Path, window: int) -> dict[str, object]:
    return api(
        handlers_dir(tmp_path, HOLD, "hold.py"),
        routes={
            "$connect": "hold.connect",
            "$disconnect": "hold.disconnect",
            "$default": {"handler": "hold.hold", "route_response": True},
        },
        limits={"max_inflight_messages": window},
    )


async def _connect(port: int, via: str, **kwargs: object) -> RawClient:
    after = "/health" if via == "aiohttp" else None
    return await RawClient.connect(port, "/dev", after=after, **kwargs)  # type: ignore[arg-type]


async def _disconnect_reason(module: str = "rec") -> tuple[int, str]:
    await wait_until(lambda: bool(of_type(recorded(module), "DISCONNECT")))
    ctx = of_type(recorded(module), "DISCONNECT")[-1]["requestContext"]
    return ctx["disconnectStatusCode"], ctx["disconnectReason"]


@VIA
async def test_a_burst_read_at_once_keeps_the_in_flight_window(
    start_gateway: StartGateway, tmp_path: Path, via: str
) -> None:
    # picows delivers every frame of a read at once; beyond the window they wait, in order.
    gw = await start_gateway({"apis": [_hold_api(tmp_path, 2)]})
    raw = await _connect(gw.port, via)
    burst = b"".join(RawClient.encode_frame(0x1, b"m%d" % i) for i in range(40))
    raw.writer.write(burst)
    got = [(await asyncio.wait_for(raw.read_frame(), 10))[1] for _ in range(40)]
    assert sorted(got) == sorted(b"m%d" % i for i in range(40))
    import hold  # the handlers' module, loaded in this process by the in-process runtime

    assert hold.PEAK[0] == 2
    raw.close()


@VIA
async def test_answers_of_a_handler_that_never_suspends_keep_the_order_sent(
    start_gateway: StartGateway, tmp_path: Path, via: str
) -> None:
    # An `async def` handler that awaits nothing: on 3.12+ each message runs eagerly, inside
    # the read that delivered it, and frees its window slot at once (transport/eager.py); on
    # 3.11 each is a scheduled task, run in arrival order. Either way a burst far beyond the
    # window is answered completely and in the order it was sent.
    code = handlers_dir(tmp_path, NO_SUSPEND, "nosuspend.py")
    routes = {"$default": {"handler": "nosuspend.echo", "route_response": True}}
    limits = {"max_inflight_messages": 2}
    gw = await start_gateway({"apis": [api(code, routes=routes, limits=limits)]})
    raw = await _connect(gw.port, via)
    sent = [b"m%d" % i for i in range(60)]
    raw.writer.write(b"".join(RawClient.encode_frame(0x1, m) for m in sent))
    got = [(await asyncio.wait_for(raw.read_frame(), 10))[1] for _ in range(60)]
    assert got == sent
    raw.send_frame(0x1, b"after")  # the window is free again
    assert (await asyncio.wait_for(raw.read_frame(), 5))[1] == b"after"
    raw.close()


@VIA
async def test_fragments_close_codes_and_bad_text(
    start_gateway: StartGateway, tmp_path: Path, via: str
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    raw = await _connect(gw.port, via)
    raw.send_frame(0x1, b'{"action":"ec', fin=False)
    raw.send_frame(0x0, b'ho","n":1}')
    assert await asyncio.wait_for(raw.read_frame(), 5) == (0x1, b'{"action":"echo","n":1}')
    raw.send_frame(0x8, (4001).to_bytes(2, "big") + b"bye")
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1000  # the answer
    assert await _disconnect_reason() == (4001, "bye")

    recorded().clear()
    raw = await _connect(gw.port, via)
    raw.send_frame(0x1, b'{"action":"echo","x":"\xff"}')  # not UTF-8
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1007
    code, _ = await _disconnect_reason()
    assert code == 1007
    assert not of_type(recorded(), "MESSAGE")
    raw.close()


async def test_a_continuation_without_a_first_frame_closes_1002(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    raw = await RawClient.connect(gw.port, "/dev")
    raw.send_frame(0x0, b"orphan")
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1002
    raw.send_frame(0x8, (1002).to_bytes(2, "big"))
    assert await _disconnect_reason() == (1002, "Protocol error")
    raw.close()


async def test_a_head_written_byte_by_byte_is_upgraded(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    raw = await RawClient.connect(gw.port, "/dev?who=drip", drip=True)
    raw.send_frame(0x1, b'{"action":"echo"}')
    assert await asyncio.wait_for(raw.read_frame(), 5) == (0x1, b'{"action":"echo"}')
    connect = of_type(recorded(), "CONNECT")[-1]
    assert connect["queryStringParameters"] == {"who": "drip"}
    raw.close()


async def test_plain_http_pipelined_oversize_and_silent_connections(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sniffer, "HEAD_TIMEOUT_S", 0.3)
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})

    # Two pipelined requests in one write: both answered by aiohttp, in order.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    two = b"GET /dev/@connections/nope HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(one + two)
    assert (await read_http_answer(reader))[0] == 200
    assert (await read_http_answer(reader))[0] in (403, 410)  # unsigned, or unknown id
    writer.close()

    # A head larger than the sniffer reads goes to aiohttp, which refuses it.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /dev HTTP/1.1\r\nX-Big: " + b"a" * (sniffer.HEAD_MAX_BYTES + 10))
    status, _ = await asyncio.wait_for(read_http_answer(reader), 5)
    assert status in (400, 431)
    writer.close()

    # A connection that never finishes its head is closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"GET /dev HTTP/1.1\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_bad_handshake_is_refused_before_connect_runs(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"  # no Sec-WebSocket-Key
    )
    status, body = await asyncio.wait_for(read_http_answer(reader), 5)
    assert status == 400 and json.loads(body) == {"message": "Bad Request"}
    assert await asyncio.wait_for(reader.read(), 5) == b""  # and closed
    writer.close()
    # Another version: 426 naming version 13 (RFC 6455 §4.2.2; issue 13 item 10).
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(
        b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n"
    )
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    assert head.startswith("HTTP/1.1 426 ") and "\r\nSec-WebSocket-Version: 13\r\n" in head
    assert not of_type(recorded(), "CONNECT")
    writer.close()


async def test_a_connect_refusal_is_an_http_answer_on_the_fast_path(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    with pytest.raises(AssertionError, match=r"HTTP/1\.1 418"):
        await RawClient.connect(gw.port, "/dev?status=418")
    assert of_type(recorded(), "CONNECT")


async def _events(raw: RawClient) -> dict[str, object]:
    """The next AppSync frame that is not a keep-alive."""
    while True:
        opcode, payload = await asyncio.wait_for(raw.read_frame(), 10)
        assert opcode == 0x1, (opcode, payload)
        frame = json.loads(payload)
        if frame.get("type") != "ka":
            return frame  # type: ignore[no-any-return]


@VIA
async def test_appsync_realtime_on_both_transports(start_gateway: StartGateway, via: str) -> None:
    gw = await start_gateway({"apis": [events_api()]})
    after = "/health" if via == "aiohttp" else None

    def offer(key: str) -> str:
        auth = header_subprotocol({"host": f"127.0.0.1:{gw.port}", "x-api-key": key})
        return f"Sec-WebSocket-Protocol: {SUBPROTOCOL}, {auth}\r\n"

    raw = await RawClient.connect(
        gw.port, "/event/realtime", after=after, extra_headers=offer(API_KEY)
    )
    raw.send_frame(0x1, b'{"type":"connection_init"}')
    assert (await _events(raw))["type"] == "connection_ack"
    sub = {"type": "subscribe", "id": "s1", "channel": "/default/x"}
    raw.send_frame(0x1, json.dumps({**sub, "authorization": {"x-api-key": API_KEY}}).encode())
    assert await _events(raw) == {"type": "subscribe_success", "id": "s1"}
    raw.send_frame(0x2, b"\x00binary")  # answered with an error frame; the connection stays
    assert (await _events(raw))["type"] == "error"
    publish = {"type": "publish", "id": "p1", "channel": "/default/x", "events": ['"hi"']}
    raw.send_frame(0x1, json.dumps({**publish, "authorization": {"x-api-key": API_KEY}}).encode())
    assert await _events(raw) == {"type": "data", "id": "s1", "event": '"hi"'}
    assert (await _events(raw))["type"] == "publish_success"
    raw.close()

    # A refused connect: connection_error after the upgrade, then close 1000 (§2.1).
    raw = await RawClient.connect(
        gw.port, "/event/realtime", after=after, extra_headers=offer("bad")
    )
    frame = await _events(raw)
    assert frame["type"] == "connection_error"
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1000
    raw.close()


async def _pusher(raw: RawClient) -> dict[str, object]:
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 10)
    assert opcode == 0x1, (opcode, payload)
    frame = json.loads(payload)
    assert isinstance(frame, dict)
    return frame


@VIA
async def test_pusher_protocol_on_both_transports(start_gateway: StartGateway, via: str) -> None:
    gw = await start_gateway(
        {"apis": [pusher_app(), pusher_app(name="one", app_id="8", key="one", max_connections=1)]}
    )
    after = "/health" if via == "aiohttp" else None
    raw = await RawClient.connect(gw.port, f"/app/{KEY}?protocol=7", after=after)
    assert (await _pusher(raw))["event"] == "pusher:connection_established"
    # Frames are applied one after the other, in order, whatever one read holds.
    burst = [
        {"event": "pusher:subscribe", "data": {"channel": "news"}},
        {"event": "pusher:ping", "data": {}},
        {"event": "pusher:unsubscribe", "data": {"channel": "news"}},
        {"event": "pusher:subscribe", "data": {"channel": "news"}},
    ]
    raw.writer.write(b"".join(RawClient.encode_frame(0x1, json.dumps(f).encode()) for f in burst))
    events = [(await _pusher(raw))["event"] for _ in range(3)]
    assert events == [
        "pusher_internal:subscription_succeeded",
        "pusher:pong",
        "pusher_internal:subscription_succeeded",
    ]
    await sdk(gw).trigger("news", "story", {"n": 1})
    story = await _pusher(raw)
    assert (story["event"], story["channel"]) == ("story", "news")

    # The quota is checked after the upgrade: pusher:error 4004, then close 4004.
    first = await RawClient.connect(gw.port, "/app/o%6Ee", after=after)  # the key, encoded
    assert (await _pusher(first))["event"] == "pusher:connection_established"
    second = await RawClient.connect(gw.port, "/app/one", after=after)
    assert (await _pusher(second))["data"] == {
        "code": 4004,
        "message": "The current concurrent connections quota has been reached.",
    }
    opcode, payload = await asyncio.wait_for(second.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 4004

    # An unknown key: pusher:error 4001, then close 4001.
    unknown = await RawClient.connect(gw.port, "/app/nope", after=after)
    assert (await _pusher(unknown))["data"] == {
        "code": 4001,
        "message": "App key nope does not exist.",
    }
    opcode, payload = await asyncio.wait_for(unknown.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 4001
    for client in (raw, first, second, unknown):
        client.close()
