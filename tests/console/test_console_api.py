"""The console's HTTP API against a real gateway: state, the tail with masking and bounds,
the actions on each front door, and the protection rules (console/server.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from sockway.console.tail import Tail, mask_text
from sockway.gateway.config import ConfigError, parse_config
from sockway.observability.tap import Activity
from tests.conftest import StartGateway
from tests.e2e.appsync_support import EventsClient, events_api
from tests.e2e.pusher_support import Client, pusher_app
from tests.e2e.support import api, handlers_dir

ACTION = {"X-Sockway-Console": "1"}
TOKEN = "s3cret-console-token-0123"


def test_masking() -> None:
    frame = {"event": "pusher:subscribe", "data": {"channel": "private-a", "auth": "key:sig"}}
    assert json.loads(mask_text(json.dumps(frame)))["data"] == {
        "channel": "private-a",
        "auth": "***",
    }
    publish = {"type": "publish", "authorization": {"x-api-key": "da2-x", "host": "h"}}
    assert json.loads(mask_text(json.dumps(publish)))["authorization"] == {
        "x-api-key": "***",
        "host": "h",
    }
    assert (
        mask_text('{"Authorization": "Bearer abc"') == '{"Authorization": "Bearer ***"'
    )  # cut JSON
    assert mask_text("Authorization: Bearer abc.def") == "Authorization: Bearer ***"


def test_tail_is_bounded_and_truncates() -> None:
    tail = Tail(items=10, payload_max_bytes=64)
    for i in range(25):
        tail.record(Activity("message", "a", connection_id=f"c{i % 2}", payload="x" * 100))
    assert len(tail.view()) == 10
    assert len(tail.view(connection="a/c0")) == 10
    item = tail.view()[-1]
    assert item["payload"] == "x" * 64 and item["payloadBytes"] == 100 and item["truncated"]
    # Many connections: the per-connection views together stay within their budget.
    for i in range(1000):
        tail.record(Activity("message", "a", connection_id=f"n{i}", payload="y"))
    assert tail.by_connection.count <= 10 * 10
    assert len(tail.view(connection="a/n999")) == 1
    assert tail.view(connection="a/c0") == []  # the least recently active went first


async def _get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(url, **kw) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url, json=body, headers=ACTION) as r:
        return r.status, await r.json()


async def test_state_tail_and_actions_on_each_door(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path)), pusher_app(), events_api()]})
    base = f"http://127.0.0.1:{gw.port}/_sockway/"
    async with aiohttp.ClientSession() as http:
        ws = await websockets.connect(f"ws://127.0.0.1:{gw.port}/dev", user_agent_header="ua/1")
        await ws.send(json.dumps({"action": "echo", "token": "hunter2"}))
        assert "hunter2" in await ws.recv()
        pusher = await Client.connect(gw)
        await pusher.subscribe("room")
        events = await EventsClient.connect(gw.port)
        assert (await events.subscribe("s1", "/default/room"))["type"] == "subscribe_success"

        status, state = await _get(http, base + "api/state")
        assert status == 200
        by_name = {a["name"]: a for a in state["apis"]}
        assert by_name["t"]["urls"][0] == ["WebSocket", f"ws://127.0.0.1:{gw.port}/dev"]
        (conn,) = by_name["t"]["connections"]
        assert conn["ip"] == "127.0.0.1" and conn["userAgent"] == "ua/1"
        assert by_name["p"]["connections"][0]["channels"] == ["room"]
        assert by_name["ev"]["connections"][0]["subscriptions"] == ["s1 /default/room"]
        echo = next(i for i in state["tail"] if i["routeKey"] == "echo")
        assert '"token":"***"' in echo["payload"]  # masked in the tail ...
        inv = next(i for i in state["invocations"] if i["routeKey"] == "echo")
        assert inv["requestId"] == echo["requestId"]  # ... linked to its invocation
        assert inv["detail"]["logs"][0].startswith("START RequestId: ")
        assert inv["detail"]["logs"][-1].startswith("REPORT RequestId: ")
        # a failing handler: its traceback is in the invocation's log
        await ws.send(json.dumps({"action": "fail"}))
        await ws.recv()
        _, state = await _get(http, base + "api/state")
        failed = next(i for i in state["invocations"] if i["routeKey"] == "fail")
        assert failed["detail"]["outcome"] == "error"
        assert "ValueError: handler bug on purpose" in "\n".join(failed["detail"]["logs"])
        # the per-channel view: the Pusher client's subscribe frame concerns channel room
        _, room = await _get(http, base + "api/state?channel=p/room")
        assert [i["routeKey"] for i in room["tail"]] == ["pusher:subscribe"]

        # send, as @connections POST
        status, _ = await _post(
            http,
            base + "api/send",
            {"api": "t", "connectionId": conn["id"], "data": "from console"},
        )
        assert status == 200 and await ws.recv() == "from console"
        # a handler's @connections POST shows in the tail as a message out
        async with http.post(
            f"http://127.0.0.1:{gw.port}/dev/@connections/{conn['id']}", data=b"via api"
        ) as r:
            assert r.status == 200
        assert await ws.recv() == "via api"
        _, state = await _get(http, base + f"api/state?connection=t/{conn['id']}")
        outs = [i["payload"] for i in state["tail"] if i["kind"] == "out"]
        assert outs[-2:] == ["from console", "via api"]
        # publish on each door
        status, out = await _post(
            http, base + "api/publish", {"api": "p", "channel": "room", "event": "hi", "data": "{}"}
        )
        assert status == 200, out
        frame = await pusher.expect("hi")
        assert frame["channel"] == "room"
        status, out = await _post(
            http, base + "api/publish", {"api": "ev", "channel": "/default/room", "data": '{"a":1}'}
        )
        assert status == 200 and out["delivered"] == 1
        data = await events.recv()
        assert data["type"] == "data" and json.loads(data["event"]) == {"a": 1}
        status, out = await _post(
            http, base + "api/publish", {"api": "ev", "channel": "/nope/x", "data": "{}"}
        )
        assert status == 400
        # disconnect
        status, _ = await _post(
            http, base + "api/disconnect", {"api": "t", "connectionId": conn["id"]}
        )
        assert status == 200
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1000
        status, _ = await _post(http, base + "api/send", {"api": "t", "connectionId": conn["id"]})
        assert status == 410
        # an action without the console's header is refused (cross-site forms cannot set it)
        async with http.post(base + "api/disconnect", json={"api": "p"}) as r:
            assert r.status == 403
        await pusher.close()
        await events.close()


async def test_stream_delivers_items(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    url = f"http://127.0.0.1:{gw.port}/_sockway/api/stream"
    async with aiohttp.ClientSession() as http, http.get(url) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readline() == b"retry: 2000\n"
        async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
            await ws.send(json.dumps({"action": "echo"}))
            await ws.recv()
        kinds: list[str] = []
        while "message" not in kinds:
            line = await stream.content.readline()
            if line.startswith(b'data: {"seq"'):
                kinds.append(json.loads(line[6:])["kind"])
        # $connect ran (invoke), admitted the connection (connect), then the message
        assert kinds.index("invoke") < kinds.index("connect") < kinds.index("message")


async def test_refused_without_token_on_non_loopback(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # Bound to every interface: requests from 127.0.0.1 still need the token, since the
    # decision is the listener's address, not the peer's.
    gw = await start_gateway(
        {"listen": "0.0.0.0:0", "console": {"token": TOKEN}, "apis": [api(handlers_dir(tmp_path))]}
    )
    base = f"http://127.0.0.1:{gw.port}/_sockway/"
    async with aiohttp.ClientSession() as http:
        for path in ("", "api/state", "api/stream", "static/console.js"):
            async with http.get(base + path) as r:
                assert r.status == 401, path
        async with http.post(base + "api/disconnect", json={}, headers=ACTION) as r:
            assert r.status == 401
        async with http.get(base + "api/state", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.get(base + "api/state", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status == 200
    # The page's login: ?token= sets a cookie (``unsafe``: aiohttp keeps cookies of IP hosts
    # only when told to; browsers do).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(base + f"?token={TOKEN}") as r:
            assert r.status == 200 and str(r.url) == base
        async with http.get(base + "api/state") as r:
            assert r.status == 200


async def test_off_without_token_on_non_loopback(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"listen": "0.0.0.0:0", "apis": [api(handlers_dir(tmp_path))]})
    assert gw.console is None
    url = f"http://127.0.0.1:{gw.port}/_sockway/api/state"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 403  # the gateway's answer for a path no API serves
    with pytest.raises(ConfigError, match="console"):
        parse_config({"listen": "0.0.0.0:8080", "console": {"enabled": True}}, tmp_path)
    with pytest.raises(ConfigError, match=r"console\.token: must be at least 16 characters"):
        parse_config({"console": {"token": "short"}}, tmp_path)


async def test_loopback_refuses_a_foreign_host_header(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{gw.port}/_sockway/api/state"
        for host in (f"attacker.example:{gw.port}", f"127.0.0.1.attacker.example:{gw.port}"):
            async with http.get(url, headers={"Host": host}) as r:
                assert r.status == 403, host  # a DNS-rebinding page
        for host in (f"localhost:{gw.port}", f"127.0.0.2:{gw.port}", f"[::1]:{gw.port}"):
            async with http.get(url, headers={"Host": host}) as r:
                assert r.status == 200, host
        async with http.get(url) as r:
            assert r.status == 200


EVENTS_HANDLER = """
def on_publish(event, context):
    print("onPublish saw", len(event["events"]), "event(s)")
    return {"events": [{"id": e["id"], "payload": e["payload"]} for e in event["events"]]}
"""


async def test_events_invocation_is_linked_to_its_operation(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = handlers_dir(tmp_path, EVENTS_HANDLER, "evh.py")
    config = events_api(code, namespaces={"default": {"on_publish": "evh.on_publish"}})
    gw = await start_gateway({"apis": [config]})
    client = await EventsClient.connect(gw.port)
    assert (await client.publish("op-7", "/default/x", [{"a": 1}]))["type"] == "publish_success"
    await client.close()
    async with aiohttp.ClientSession() as http:
        _, state = await _get(http, f"http://127.0.0.1:{gw.port}/_sockway/api/state")
    op = next(i for i in state["tail"] if i["routeKey"] == "publish")
    (inv,) = state["invocations"]
    assert inv["routeKey"] == "default.PUBLISH"
    assert inv["detail"]["cause"] == op["requestId"] == "op-7"
    assert inv["connectionId"] == op["connectionId"]
    assert any(line.endswith("\tonPublish saw 1 event(s)") for line in inv["detail"]["logs"])
    assert '"x-api-key":"***"' in op["payload"]


PROCESS_HANDLER = """
import logging

def hello(event, context):
    print("worker printed", context.aws_request_id)
    logging.getLogger().warning("worker warned")
    return {"statusCode": 200, "body": "ok"}
"""


async def test_process_runtime_output_reaches_the_invocation(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = handlers_dir(tmp_path, PROCESS_HANDLER, "proc_h.py")
    config = {
        "name": "w",
        "type": "websocket",
        "stage": "dev",
        "code_dir": str(code),
        "runtime": "process",
        "routes": {"hello": {"handler": "proc_h.hello", "route_response": True}},
    }
    gw = await start_gateway({"apis": [config]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send(json.dumps({"action": "hello"}))
        assert await ws.recv() == "ok"
    async with aiohttp.ClientSession() as http:
        _, state = await _get(http, f"http://127.0.0.1:{gw.port}/_sockway/api/state")
    (inv,) = [i for i in state["invocations"] if i["routeKey"] == "hello"]
    logs = inv["detail"]["logs"]
    assert f"worker printed {inv['requestId']}" in logs
    assert any(line.startswith("[WARNING]\t") and line.endswith("\tworker warned") for line in logs)


NODE_HANDLER = """
export const handler = async (event, context) => {
  console.log("node printed", context.awsRequestId);
  console.warn("node warned");
  return { statusCode: 200, body: "ok" };
};
"""


async def test_nodejs_runtime_output_reaches_the_invocation(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    # Node workers share the process runtime's pool and its log path (runtimes/nodejs.py).
    code = handlers_dir(tmp_path, NODE_HANDLER, "node_h.mjs")
    config = {
        "name": "w",
        "type": "websocket",
        "stage": "dev",
        "code_dir": str(code),
        "runtime": "nodejs",
        "routes": {"hello": {"handler": "node_h.handler", "route_response": True}},
    }
    gw = await start_gateway({"apis": [config], "nodejs": {"aws_sdk": []}})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send(json.dumps({"action": "hello"}))
        assert await ws.recv() == "ok"
    async with aiohttp.ClientSession() as http:
        _, state = await _get(http, f"http://127.0.0.1:{gw.port}/_sockway/api/state")
    (inv,) = [i for i in state["invocations"] if i["routeKey"] == "hello"]
    logs = inv["detail"]["logs"]
    rid = inv["requestId"]
    assert any(f"\t{rid}\tINFO\tnode printed {rid}" in line for line in logs), logs
    assert any("\tWARN\tnode warned" in line for line in logs), logs


AUTHORIZER = """
def handler(event, context):
    return {
        "principalId": "ann",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}]},
        "context": {"tenant": "acme", "sessionToken": "s3cr3t", "token": "t0k3n"},
    }
"""


async def test_authorizer_context_is_shown_masked(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = handlers_dir(tmp_path)
    (code / "authz.py").write_text(AUTHORIZER)
    authorizer = {"handler": "authz.handler", "identity_source": ["route.request.querystring.t"]}
    gw = await start_gateway({"apis": [api(code, authorizer=authorizer)]})
    ws_url = f"ws://127.0.0.1:{gw.port}/dev?t=x"
    async with websockets.connect(ws_url), aiohttp.ClientSession() as http:
        _, state = await _get(http, f"http://127.0.0.1:{gw.port}/_sockway/api/state")
    (conn,) = state["apis"][0]["connections"]
    authorizer = conn["authorizer"]
    assert authorizer["principalId"] == "ann" and authorizer["tenant"] == "acme"
    assert authorizer["token"] == authorizer["sessionToken"] == "***"
    assert "s3cr3t" not in json.dumps(state)


async def test_console_off_by_config(start_gateway: StartGateway, tmp_path: Path) -> None:
    gw = await start_gateway({"console": {"enabled": False}, "apis": [api(handlers_dir(tmp_path))]})
    assert gw.console is None and gw.console_url() is None
    url = f"http://127.0.0.1:{gw.port}/_sockway/"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 403
