"""Access-log lines (observability/access_log.py): the templates, and a real gateway writing
one line per connect, refused handshake, routed message and disconnect."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from sockway.observability.access_log import ACCESS_LOGGER, compile_format, unknown_variables
from sockway.observability.tap import Activity
from tests.conftest import StartGateway, write_handlers
from tests.e2e.support import HANDLERS, api, handlers_dir, wait_until


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines() -> Iterator[list[str]]:
    handler = _Lines()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def _activity() -> Activity:
    return Activity(
        "message",
        "chat",
        connection_id="abc=",
        route_key="sendmessage",
        status=200,
        latency_ms=12.4,
        request_id="req-1",
        ip="10.0.0.7",
        time_s=1_700_000_000.5,
    )


def test_text_preset_has_every_field() -> None:
    line = compile_format("text")(_activity())
    assert line == (
        "14/Nov/2023:22:13:20 +0000 10.0.0.7 chat MESSAGE sendmessage abc= 200 12 req-1"
    )


def test_json_preset_is_json_with_apigw_names() -> None:
    out = json.loads(compile_format("json")(_activity()))
    assert out["connectionId"] == "abc="
    assert out["eventType"] == "MESSAGE"
    assert out["routeKey"] == "sendmessage"
    assert out["status"] == "200"
    assert out["integrationLatency"] == "12"
    assert out["requestId"] == "req-1"
    assert out["ip"] == "10.0.0.7"
    assert out["requestTimeEpoch"] == 1_700_000_000_500
    assert out["disconnectStatusCode"] == "-"


def test_user_template_and_escaping() -> None:
    activity = _activity()
    activity.route_key = 'a"b'
    render = compile_format('{"r":"$context.routeKey","t":$context.requestTimeEpoch}')
    assert json.loads(render(activity)) == {"r": 'a"b', "t": 1_700_000_000_500}
    plain = compile_format("$context.eventType $context.routeKey $context.integrationLatency")
    activity.latency_ms = None
    assert plain(activity) == 'MESSAGE a"b -'
    assert unknown_variables("$context.requestId $context.nope") == ["$context.nope"]


async def test_one_line_per_event_type(
    start_gateway: StartGateway, tmp_path: Path, access_lines: list[str]
) -> None:
    gw = await start_gateway(
        {
            "access_log": {"format": "json"},
            "apis": [api(handlers_dir(tmp_path))],
        }
    )
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "echo", "x": 1}))
        await ws.recv()
        await ws.send(json.dumps({"action": "fail"}))
        await ws.recv()
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url + "?status=403"):
            pass
    await wait_until(lambda: sum('"DISCONNECT"' in line for line in access_lines) == 1)
    lines = [json.loads(line) for line in access_lines]
    by = {(x["eventType"], x["routeKey"], x["status"]): x for x in lines}
    connect = by[("CONNECT", "$connect", "200")]
    assert connect["ip"] == "127.0.0.1"
    assert connect["integrationLatency"] != "-"
    echo = by[("MESSAGE", "echo", "200")]
    assert echo["connectionId"] == connect["connectionId"]
    assert echo["requestId"] not in ("-", connect["requestId"])
    assert by[("MESSAGE", "fail", "500")]["connectionId"] == connect["connectionId"]
    refused = by[("CONNECT", "$connect", "403")]  # the handshake refused by $connect
    assert refused["connectionId"] != connect["connectionId"]
    gone = by[("DISCONNECT", "$disconnect", "200")]
    assert gone["connectionId"] == connect["connectionId"]
    assert gone["disconnectStatusCode"] == "1000"
    assert len(lines) == 5


async def test_access_log_off(
    start_gateway: StartGateway, tmp_path: Path, access_lines: list[str]
) -> None:
    gw = await start_gateway(
        {"access_log": {"enabled": False}, "apis": [api(handlers_dir(tmp_path))]}
    )
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send(json.dumps({"action": "echo"}))
        await ws.recv()
    assert access_lines == []


async def test_events_api_lines(start_gateway: StartGateway, access_lines: list[str]) -> None:
    from tests.e2e.appsync_support import EventsClient, events_api

    gw = await start_gateway({"access_log": {"format": "json"}, "apis": [events_api()]})
    client = await EventsClient.connect(gw.port)
    assert (await client.subscribe("s1", "/default/room"))["type"] == "subscribe_success"
    await client.close()
    with pytest.raises(websockets.ConnectionClosed):
        bad = await EventsClient.connect(gw.port, {"host": "x", "x-api-key": "wrong"}, init=False)
        await bad.send({"type": "connection_init"})
        await bad.recv()
        await bad.recv()
    await wait_until(lambda: sum('"DISCONNECT"' in line for line in access_lines) >= 1)
    await wait_until(lambda: sum('"status":"401"' in line for line in access_lines) == 1)
    lines = [json.loads(line) for line in access_lines]
    kinds = [(x["eventType"], x["routeKey"], x["status"]) for x in lines]
    assert ("CONNECT", "$connect", "200") in kinds
    assert ("MESSAGE", "subscribe", "200") in kinds
    assert ("DISCONNECT", "$disconnect", "200") in kinds
    assert ("CONNECT", "$connect", "401") in kinds  # the refused connection
    sub = next(x for x in lines if x["routeKey"] == "subscribe")
    assert sub["requestId"] == "s1" and sub["ip"] == "127.0.0.1"


async def test_pusher_app_lines(start_gateway: StartGateway, access_lines: list[str]) -> None:
    from tests.e2e.pusher_support import Client, pusher_app

    gw = await start_gateway({"access_log": {"format": "text"}, "apis": [pusher_app()]})
    client = await Client.connect(gw)
    await client.subscribe("room")
    await client.close()
    await wait_until(lambda: any(" DISCONNECT " in line for line in access_lines))
    sid = client.socket_id
    assert any(f" CONNECT $connect {sid} 200 " in line for line in access_lines), access_lines
    assert any(f" MESSAGE pusher:subscribe {sid} 200 " in line for line in access_lines)
    assert any(f" DISCONNECT $disconnect {sid} 200 " in line for line in access_lines)
    # an unknown app key is a refused handshake (pusher:error 4001)
    access_lines.clear()
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/app/nope?protocol=7") as ws:
        assert json.loads(await ws.recv())["data"]["code"] == 4001
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    (line,) = access_lines
    assert " 127.0.0.1 - CONNECT $connect - 404 " in line


PRINTING = """
import logging

def hello(event, context):
    print("handler says hi")
    logging.getLogger("app").warning("careful")
    return {"statusCode": 200, "body": "ok"}
"""


async def test_handler_output_gets_lambda_prefix(
    start_gateway: StartGateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    code = handlers_dir(tmp_path, PRINTING, "printing.py")
    gw = await start_gateway(
        {
            "access_log": {"enabled": False},  # the prefix does not depend on anyone listening
            "apis": [
                {
                    "name": "p",
                    "type": "websocket",
                    "stage": "dev",
                    "code_dir": str(code),
                    "routes": {"hello": {"handler": "printing.hello", "route_response": True}},
                }
            ],
        }
    )
    caplog.set_level(logging.INFO)
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send(json.dumps({"action": "hello"}))
        assert await ws.recv() == "ok"
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.endswith("handler says hi"))
    level, stamp, request_id, message = line.split("\t")
    assert level == "[INFO]" and message == "handler says hi"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert len(request_id) > 8
    record = next(r for r in caplog.records if r.getMessage() == "careful")
    assert getattr(record, "request_id", None) == request_id  # the same invocation
    print("outside any invocation")
    assert capsys.readouterr().out == "outside any invocation\n"


def test_json_log_time_has_milliseconds_and_zone() -> None:
    from sockway.observability.logging import JsonFormatter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = 1_700_000_000.25
    assert json.loads(JsonFormatter().format(record))["time"] == "2023-11-14T22:13:20.250Z"


async def test_a_malformed_handshake_is_logged_as_refused(
    start_gateway: StartGateway, tmp_path: Path, access_lines: list[str]
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(  # an upgrade without Sec-WebSocket-Key: refused before any handler runs
        f"GET /dev HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 400")
    writer.close()
    (line,) = access_lines
    assert " CONNECT $connect " in line and " 400 " in line


DENYING_AUTHORIZER = """
CALLS = []


def handler(event, context):
    CALLS.append(event)
    effect = "Allow" if event["queryStringParameters"]["token"] == "good" else "Deny"
    return {
        "principalId": "someone",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}]},
    }
"""


async def test_an_authorizer_deny_is_a_refused_connect_line(
    start_gateway: StartGateway, tmp_path: Path, access_lines: list[str]
) -> None:
    """Issue 16's own example: a REQUEST authorizer's 403 (apigw spec §5.3, a Deny policy) is
    one ``CONNECT $connect ... 403`` line carrying the refused connection's id and the request
    id the authorizer was invoked with — the id its START/END/REPORT lines show."""
    code = write_handlers(tmp_path / "h", {"rec.py": HANDLERS, "denier.py": DENYING_AUTHORIZER})
    authorizer = {
        "handler": "denier.handler",
        "identity_source": ["route.request.querystring.token"],
    }
    gw = await start_gateway(
        {"access_log": {"format": "text"}, "apis": [api(code, authorizer=authorizer)]}
    )
    url = f"ws://127.0.0.1:{gw.port}/dev"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url + "?token=bad"):
            pass
    assert refused.value.response.status_code == 403
    (event,) = sys.modules["denier"].CALLS
    connection_id = event["requestContext"]["connectionId"]
    request_id = event["requestContext"]["requestId"]
    (line,) = access_lines  # $connect never ran: no other line
    stamp, rest = line[:26], line[27:]
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", stamp), line
    ip, api_name, event_type, route_key, conn, status, latency, rid = rest.split(" ")
    assert (ip, api_name, event_type, route_key) == ("127.0.0.1", "t", "CONNECT", "$connect")
    assert (conn, status, rid) == (connection_id, "403", request_id)
    assert latency.isdigit()  # the authorizer's time, in ms
    # The same refusal in JSON names the fields as API Gateway's $context does.
    access_lines.clear()
    json_gw = await start_gateway(
        {"access_log": {"format": "json"}, "apis": [api(code, authorizer=authorizer)]}
    )
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"ws://127.0.0.1:{json_gw.port}/dev?token=bad"):
            pass
    (line,) = access_lines
    out = json.loads(line)
    event = sys.modules["denier"].CALLS[-1]
    assert out["eventType"] == "CONNECT" and out["routeKey"] == "$connect"
    assert out["status"] == "403" and out["ip"] == "127.0.0.1"
    assert out["connectionId"] == event["requestContext"]["connectionId"]
    assert out["requestId"] == event["requestContext"]["requestId"]
    assert out["disconnectStatusCode"] == "-"
    # An allowed client is admitted: its line is a 200 on the same route.
    access_lines.clear()
    async with websockets.connect(f"ws://127.0.0.1:{json_gw.port}/dev?token=good"):
        pass
    await wait_until(lambda: any('"DISCONNECT"' in x for x in access_lines))
    admitted = json.loads(access_lines[0])
    assert (admitted["eventType"], admitted["routeKey"], admitted["status"]) == (
        "CONNECT",
        "$connect",
        "200",
    )
