"""Message routing, two-way routes and error frames (apigw spec §2, §3.1)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import websockets

from tests.conftest import StartGateway
from tests.e2e.support import api, handlers_dir, of_type, recorded, wait_until

_ID = r"[A-Za-z0-9_\-]{15}="


async def test_no_route_and_no_default_gets_byte_exact_forbidden_frame(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    config = api(handlers_dir(tmp_path))
    del config["routes"]["$default"]
    gw = await start_gateway({"apis": [config]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"nope"}')
        frame = await ws.recv()
        conn_id = of_type(recorded(), "CONNECT")[0]["requestContext"]["connectionId"]
        assert re.fullmatch(
            r'\{"message": "Forbidden", "connectionId":"'
            + re.escape(conn_id)
            + r'", "requestId":"'
            + _ID
            + r'"\}',
            str(frame),
        )
        await ws.send("not json either")
        assert str(await ws.recv()).startswith('{"message": "Forbidden", "connectionId":"')
        # The connection stays open.
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'


async def test_handler_exception_sends_internal_server_error_and_keeps_connection(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"fail"}')  # a one-way route: the error frame is still sent
        frame = str(await ws.recv())
        assert re.fullmatch(
            r'\{"message": "Internal server error", "connectionId":"'
            + _ID
            + r'", "requestId":"'
            + _ID
            + r'"\}',
            frame,
        )
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
    metrics = await _metrics(gw.port)
    assert 'sockway_handler_errors_total{api="t",kind="error",route="fail"} 1.0' in metrics


async def test_integration_timeout_sends_endpoint_request_timed_out(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"quick","seconds":2}')  # route timeout_s: 0.3
        frame = str(await asyncio.wait_for(ws.recv(), 5))
        assert frame.startswith('{"message": "Endpoint request timed out", "connectionId":"')
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'


async def test_one_way_route_sends_nothing(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"oneway"}')
        await wait_until(lambda: len(of_type(recorded(), "MESSAGE")) == 1)
        await ws.send('{"action":"echo","n":2}')
        # The first frame that arrives is the echo: the one-way result was discarded.
        assert await ws.recv() == '{"action":"echo","n":2}'


async def test_lambda_context_object(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"context"}')
        info = json.loads(await ws.recv())
    assert info["function_name"] == "t-context"
    assert info["invoked_function_arn"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:t-context"
    )
    assert info["memory_limit_in_mb"] == 128
    assert 28_000 < info["remaining"] <= 29_000
    assert info["log_group_name"] == "/aws/lambda/t-context"
    assert info["request_id_matches"] is True


async def test_slow_sync_handler_does_not_stall_other_connections(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as slow, websockets.connect(url) as fast:
        await slow.send('{"action":"slow","seconds":1.5}')
        started = time.monotonic()
        await fast.send('{"action":"echo"}')
        assert await fast.recv() == '{"action":"echo"}'
        fast_elapsed = time.monotonic() - started
        assert await asyncio.wait_for(slow.recv(), 5) == "slow done"
        slow_elapsed = time.monotonic() - started
    # Ordering, not a timing bound: the fast reply arrived while the slow handler still ran.
    assert fast_elapsed < slow_elapsed


async def test_many_messages_none_lost(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway(
        {"apis": [api(handlers_dir(tmp_path), limits={"max_inflight_messages": 4})]}
    )
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        for i in range(300):
            await ws.send(json.dumps({"action": "echo", "i": i}))
        got = sorted([json.loads(await asyncio.wait_for(ws.recv(), 10))["i"] for _ in range(300)])
    assert got == list(range(300))


async def test_nested_and_template_selection_expressions(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = handlers_dir(tmp_path)
    nested = api(
        code,
        route_selection_expression="${request.body.meta.kind}/${request.body.meta.op}",
        routes={
            "chat/send": {"handler": "rec.echo", "route_response": True},
            "$default": {"handler": "rec.default", "route_response": True},
        },
    )
    gw = await start_gateway({"apis": [nested]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"meta":{"kind":"chat","op":"send"}}')
        assert await ws.recv() == '{"meta":{"kind":"chat","op":"send"}}'
        await ws.send('{"meta":{"kind":"chat"}}')  # evaluates to "chat/" → $default
        assert await ws.recv() == 'default:{"meta":{"kind":"chat"}}'
    keys = [e["requestContext"]["routeKey"] for e in of_type(recorded(), "MESSAGE")]
    assert keys == ["chat/send", "$default"]


async def _metrics(port: int) -> str:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


async def test_deeply_nested_messages_go_to_default_or_forbidden(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # Issue 13 item 8: a body nested ~1,500 levels deep raised RecursionError in route selection
    # and the message was dropped unanswered. It is a body selection cannot read: $default.
    deep = [
        "[" * 1500 + "]" * 1500,
        '{"action":' * 1500 + '"echo"' + "}" * 1500,
        '{"action":"echo","x":' + "[" * 1500 + "]" * 1500 + "}",
        '{"action":' + "[" * 990 + "]" * 990 + "}",
    ]
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        for body in deep:
            await ws.send(body)
            answer = await asyncio.wait_for(ws.recv(), 10)
            assert answer in ("default:" + body, body), answer[:80]
        await ws.send('{"action":"echo","n":1}')
        assert await ws.recv() == '{"action":"echo","n":1}'
    config = api(handlers_dir(tmp_path), name="nodefault")
    del config["routes"]["$default"]
    config["stage"] = "nd"
    gw2 = await start_gateway({"apis": [config]})
    async with websockets.connect(f"ws://127.0.0.1:{gw2.port}/nd") as ws:
        await ws.send(deep[0])
        frame = str(await asyncio.wait_for(ws.recv(), 10))
        assert frame.startswith('{"message": "Forbidden", "connectionId":"')


SURROGATE = """
import json


def ok(event, context):
    return {"statusCode": 200}


def lone_surrogate(event, context):
    return {"statusCode": 200, "body": json.loads(event["body"])["s"]}
"""


async def test_a_body_with_a_lone_surrogate_is_an_integration_error(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # Issue 13 item 9's rule (never invalid UTF-8 in a text frame) for route responses: an
    # in-process handler's str with a lone surrogate raised UnicodeEncodeError in the
    # dispatch task ("Task exception was never retrieved") and the client got nothing. As in a
    # worker (Runtime.MarshalError): "Internal server error", and the connection goes on.
    code = handlers_dir(tmp_path, SURROGATE, "sur.py")
    config = api(
        code,
        routes={
            "$connect": "sur.ok",
            "$default": {"handler": "sur.lone_surrogate", "route_response": True},
        },
    )
    gw = await start_gateway({"apis": [config]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"s":"\\ud800 alone"}')
        frame = str(await asyncio.wait_for(ws.recv(), 10))
        assert frame.startswith('{"message": "Internal server error", "connectionId":"'), frame
        await ws.send('{"s":"fine é"}')
        assert await asyncio.wait_for(ws.recv(), 10) == "fine é"
