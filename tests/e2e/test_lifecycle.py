"""$connect / $disconnect / limits against a real gateway (apigw spec §1, §3, §6, §7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import websockets
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import StartGateway
from tests.e2e.rawws import RawClient
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until


async def test_events_of_a_real_session_validate_with_powertools(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    url = f"ws://127.0.0.1:{gw.port}/dev?room=a&room=b&token=x"
    async with websockets.connect(url, user_agent_header="pytest-agent") as ws:
        await ws.send('{"action":"echo","data":1}')
        assert await ws.recv() == '{"action":"echo","data":1}'
        await ws.send("not json")
        assert await ws.recv() == "default:not json"
    await wait_until(lambda: len(of_type(recorded(), "DISCONNECT")) == 1)
    events = recorded()
    (connect,) = of_type(events, "CONNECT")
    messages = of_type(events, "MESSAGE")
    (disconnect,) = of_type(events, "DISCONNECT")
    APIGatewayWebSocketConnectEventModel.model_validate(connect)
    for message in messages:
        APIGatewayWebSocketMessageEventModel.model_validate(message)
    APIGatewayWebSocketDisconnectEventModel.model_validate(disconnect)

    ctx = connect["requestContext"]
    assert ctx["stage"] == "dev"
    assert ctx["domainName"] == f"127.0.0.1:{gw.port}"
    assert ctx["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "pytest-agent"}
    assert connect["queryStringParameters"] == {"room": "b", "token": "x"}
    assert connect["multiValueQueryStringParameters"] == {"room": ["a", "b"], "token": ["x"]}
    assert "Upgrade" not in connect["headers"] and "Connection" not in connect["headers"]
    assert connect["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert connect["headers"]["X-Forwarded-Port"] == str(gw.port)
    assert connect["headers"]["X-Amzn-Trace-Id"].startswith("Root=1-")
    assert len(ctx["connectionId"]) == 16
    # The same connection's facts repeat in every event.
    for event in [*messages, disconnect]:
        assert event["requestContext"]["connectionId"] == ctx["connectionId"]
        assert event["requestContext"]["connectedAt"] == ctx["connectedAt"]
    assert [m["requestContext"]["routeKey"] for m in messages] == ["echo", "$default"]
    assert all(m["requestContext"]["messageId"] for m in messages)
    assert disconnect["requestContext"]["disconnectStatusCode"] == 1000
    assert set(disconnect["headers"]) == {"Host", "x-api-key", "X-Forwarded-For", "x-restapi"}


async def test_connect_status_rejects_the_handshake_with_that_status(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    for status in (400, 401, 403, 301, 501):
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev?status={status}"):
                pass
        assert info.value.response.status_code == status
    # A 2xx other than 200 accepts.
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev?status=201") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
    # Rejected connections never get $disconnect (spec §3.4).
    await wait_until(lambda: len(of_type(recorded(), "DISCONNECT")) == 1)
    await asyncio.sleep(0.1)
    assert len(of_type(recorded(), "DISCONNECT")) == 1


async def test_connect_handler_that_raises_gives_502(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev?raise=1"):
            pass
    assert info.value.response.status_code == 502
    # The gateway keeps serving.
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'


async def test_without_connect_route_every_upgrade_is_accepted(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    config = api(handlers_dir(tmp_path))
    del config["routes"]["$connect"]
    gw = await start_gateway({"apis": [config]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev?status=500") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'


async def test_subprotocol_is_selected_by_connect_response_header(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    url = f"ws://127.0.0.1:{gw.port}/dev?proto=chat.v2"
    async with websockets.connect(url, subprotocols=["chat.v1", "chat.v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v2"
    (connect,) = of_type(recorded(), "CONNECT")
    assert connect["headers"]["Sec-WebSocket-Protocol"] == "chat.v1, chat.v2"


async def test_unknown_stage_and_plain_http_get(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/prod"):
            pass
    assert info.value.response.status_code == 403


async def _disconnect_of(conn_id: str) -> dict[str, object]:
    def found() -> bool:
        return any(
            e["requestContext"]["connectionId"] == conn_id
            for e in of_type(recorded(), "DISCONNECT")
        )

    await wait_until(found)
    return next(
        e["requestContext"]
        for e in of_type(recorded(), "DISCONNECT")
        if e["requestContext"]["connectionId"] == conn_id
    )


def _last_connect_id() -> str:
    return str(of_type(recorded(), "CONNECT")[-1]["requestContext"]["connectionId"])


async def test_disconnect_reports_client_close_codes(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    # Close frame without a status code → 1005 and AWS's reason text.
    raw = await RawClient.connect(gw.port, "/dev")
    conn_id = _last_connect_id()
    raw.send_frame(0x8, b"")
    opcode, _ = await asyncio.wait_for(raw.read_frame(), 5)
    assert opcode == 0x8
    raw.close()
    ctx = await _disconnect_of(conn_id)
    assert ctx["disconnectStatusCode"] == 1005
    assert ctx["disconnectReason"] == "Client-side close frame status not set"

    # A code and a reason are reported as sent.
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev")
    conn_id = _last_connect_id()
    await ws.close(code=4001, reason="bye now")
    ctx = await _disconnect_of(conn_id)
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (4001, "bye now")

    # TCP dropped without a close frame.
    raw = await RawClient.connect(gw.port, "/dev")
    conn_id = _last_connect_id()
    raw.writer.transport.abort()
    ctx = await _disconnect_of(conn_id)
    assert ctx["disconnectStatusCode"] == 1006


async def test_oversize_message_closes_1009_and_exact_limit_passes(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", max_size=None) as ws:
        body = '{"action":"echo","pad":"' + "x" * (128 * 1024 - 26) + '"}'
        assert len(body) == 128 * 1024
        # Messages over 32 KB must be fragmented (spec §6); 4 frames of 32 KB are fine.
        await ws.send(iter([body[i : i + 32 * 1024] for i in range(0, len(body), 32 * 1024)]))
        assert await ws.recv() == body
        conn_id = _last_connect_id()
        too_big = "x" * (128 * 1024 + 1)
        await ws.send(iter([too_big[i : i + 16 * 1024] for i in range(0, len(too_big), 16 * 1024)]))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    ctx = await _disconnect_of(conn_id)
    assert ctx["disconnectStatusCode"] == 1009


async def test_frame_over_32kb_closes_1009(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", max_size=None) as ws:
        exact = '{"action":"echo","pad":"' + "x" * (32 * 1024 - 26) + '"}'
        await ws.send(exact)  # one frame of exactly 32 KB
        assert await ws.recv() == exact
        conn_id = _last_connect_id()
        await ws.send("y" * (32 * 1024 + 1))  # one frame, 1 byte over
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    ctx = await _disconnect_of(conn_id)
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1009, "Frame too big")
    # No handler saw the oversize frame.
    assert all(len(e.get("body", "")) <= 32 * 1024 for e in of_type(recorded(), "MESSAGE"))


async def test_frame_limit_holds_across_tcp_chunking(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    raw = await RawClient.connect(gw.port, "/dev")
    # Many small frames written byte by byte: headers split across reads must still parse.
    for i in range(3):
        frame = raw.encode_frame(0x1, f'{{"action":"echo","i":{i}}}'.encode())
        for b in frame:
            raw.writer.write(bytes([b]))
            await raw.writer.drain()
        assert await asyncio.wait_for(raw.read_frame(), 5) == (
            0x1,
            f'{{"action":"echo","i":{i}}}'.encode(),
        )
    # A 64-bit length header announcing a huge frame closes before any payload arrives.
    raw.writer.write(bytes([0x81, 0x80 | 127]) + (10**9).to_bytes(8, "big") + b"mask")
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
    assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1009
    raw.close()


async def test_fragmented_message_is_reassembled(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    raw = await RawClient.connect(gw.port, "/dev")
    raw.send_frame(0x1, b'{"action":"ec', fin=False)
    raw.send_frame(0x0, b'ho","part":2}', fin=True)
    opcode, payload = await asyncio.wait_for(raw.read_frame(), 5)
    assert (opcode, payload) == (0x1, b'{"action":"echo","part":2}')
    raw.close()


async def test_binary_frame_closes_1003(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev")
    conn_id = _last_connect_id()
    await ws.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1003
    ctx = await _disconnect_of(conn_id)
    assert ctx["disconnectStatusCode"] == 1003


async def test_idle_timeout_and_max_duration_close_1001_going_away(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway(
        {"apis": [api(handlers_dir(tmp_path), limits={"idle_timeout_s": 1.5})]}
    )
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev")
    conn_id = _last_connect_id()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "Going away")
    ctx = await _disconnect_of(conn_id)
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")


async def test_max_connection_duration_closes_even_an_active_client(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway(
        {"apis": [api(handlers_dir(tmp_path), limits={"max_connection_duration_s": 1.5})]}
    )
    ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev")
    closed = None
    for _ in range(60):
        try:
            await ws.send('{"action":"echo"}')
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as exc:
            closed = exc
            break
        await asyncio.sleep(0.1)
    assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 1001
