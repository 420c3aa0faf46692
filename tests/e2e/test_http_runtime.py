"""HTTP endpoints as handlers (README "HTTP endpoints as handlers").

The endpoint is a real aiohttp server in the test. It checks every call's
``X-Sockway-Signature`` with the verification function printed in the README (extracted and run
as is), so the documented algorithm is the one sockway uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from aiohttp import web
from websockets.exceptions import InvalidStatus

from tests.conftest import StartGateway
from tests.e2e.support import wait_until

SECRET = "endpoint-secret-0123456789"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verifier() -> Callable[..., bool]:
    """``verify_sockway_signature`` exactly as the README prints it."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    source = next(b for b in blocks if "def verify_sockway_signature" in b)
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["verify_sockway_signature"]  # type: ignore[no-any-return]


@dataclass
class Call:
    name: str
    event: dict[str, Any]
    headers: dict[str, str]
    peer_port: int


class Endpoint:
    """The user's HTTP handlers: ``POST /{name}`` runs ``on_{name}``."""

    def __init__(self) -> None:
        self.verify = readme_verifier()
        self.calls: list[Call] = []
        self.rejected = 0
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        self.port = 0

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if not self.verify(SECRET.encode(), request.headers.get("X-Sockway-Signature", ""), body):
            self.rejected += 1
            return web.json_response({"errorMessage": "bad signature"}, status=401)
        name = request.match_info["name"]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.calls.append(Call(name, json.loads(body), dict(request.headers), peer[1]))
        answer: web.StreamResponse = await getattr(self, f"on_{name}")(json.loads(body))
        return answer

    async def on_connect(self, event: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"statusCode": 200})

    async def on_disconnect(self, event: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"statusCode": 200})

    async def on_echo(self, event: dict[str, Any]) -> web.StreamResponse:
        return web.json_response({"statusCode": 200, "body": event["body"]})

    async def on_nothing(self, event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=204)

    async def on_hold(self, event: dict[str, Any]) -> web.StreamResponse:
        await self.release.wait()
        return web.json_response({"statusCode": 200, "body": "released"})

    async def on_boom(self, event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=500, text="boom")

    async def on_html(self, event: dict[str, Any]) -> web.StreamResponse:
        return web.Response(text="<html>not json</html>", content_type="text/html")

    async def on_auth(self, event: dict[str, Any]) -> web.StreamResponse:
        token = event["queryStringParameters"]["token"]
        if token == "nope":
            return web.json_response(
                {"errorType": "Error", "errorMessage": "Unauthorized"}, status=401
            )
        effect = "Allow" if token.startswith("good") else "Deny"
        return web.json_response(
            {
                "principalId": "user-" + token,
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Action": "execute-api:Invoke",
                            "Effect": effect,
                            "Resource": event["methodArn"],
                        }
                    ],
                },
                "context": {"via": "http"},
            }
        )


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    server = Endpoint()
    await server.start()
    yield server
    server.release.set()
    await server.runner.cleanup()


def http_api(endpoint: Endpoint, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "h",
        "type": "websocket",
        "stage": "dev",
        "http": {"secret": SECRET, "headers": {"X-Team": "blue"}},
        "routes": {
            "$connect": endpoint.url("connect"),
            "$disconnect": endpoint.url("disconnect"),
            "echo": {"handler": endpoint.url("echo"), "route_response": True},
            "nothing": {"handler": endpoint.url("nothing"), "route_response": True},
            "hold": {"handler": endpoint.url("hold"), "route_response": True, "timeout_s": 0.5},
            "boom": endpoint.url("boom"),
            "html": {"handler": endpoint.url("html"), "route_response": True},
        },
    }
    config.update(overrides)
    return config


async def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    return info.value.response.status_code


async def test_route_round_trip_is_signed_and_reuses_one_session(
    endpoint: Endpoint, start_gateway: StartGateway
) -> None:
    wrong = http_api(endpoint, name="wrong", stage="wrong", http={"secret": "not-the-secret"})
    gw = await start_gateway({"apis": [http_api(endpoint), wrong]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"nothing"}')  # 204: a route that returns nothing sends nothing
        await ws.send('{"action":"echo","n":1}')
        assert await ws.recv() == '{"action":"echo","n":1}'
        await ws.send('{"action":"echo","n":2}')
        assert await ws.recv() == '{"action":"echo","n":2}'
    await wait_until(lambda: len(endpoint.named("disconnect")) == 1)

    assert endpoint.rejected == 0
    assert [c.event["requestContext"]["eventType"] for c in endpoint.calls] == [
        "CONNECT",
        "MESSAGE",
        "MESSAGE",
        "MESSAGE",
        "DISCONNECT",
    ]
    echo = endpoint.named("echo")[0]
    assert echo.event["body"] == '{"action":"echo","n":1}'
    assert (
        echo.headers["Lambda-Runtime-Aws-Request-Id"] == echo.event["requestContext"]["requestId"]
    )
    assert echo.headers["X-Sockway-Function"] == "h-echo"
    assert echo.headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:h-echo")
    assert int(echo.headers["Lambda-Runtime-Deadline-Ms"]) > 0
    assert echo.headers["Content-Type"] == "application/json"
    assert echo.headers["X-Team"] == "blue"
    assert echo.headers["User-Agent"].startswith("sockway/")
    # Kept-alive connections of the gateway's one session are reused: five calls, at most two
    # at a time ("nothing" and the first "echo" overlap), so at most two connections.
    assert len({c.peer_port for c in endpoint.calls}) <= 2

    # A gateway signing with another secret is refused by the endpoint: integration failure.
    assert await _status(f"ws://127.0.0.1:{gw.port}/wrong") == 502  # $connect failed
    assert endpoint.rejected == 1

    session = gw.integrations.http.session()
    await gw.stop()
    assert session.closed


async def test_authorizer_decision_through_http_endpoint(
    endpoint: Endpoint, start_gateway: StartGateway
) -> None:
    config = http_api(
        endpoint,
        authorizer={
            "handler": endpoint.url("auth"),
            "identity_source": ["route.request.querystring.token"],
        },
    )
    gw = await start_gateway({"apis": [config]})
    base = f"ws://127.0.0.1:{gw.port}/dev"
    assert await _status(base) == 401  # identity source missing: not called
    assert endpoint.named("auth") == []
    assert await _status(base + "?token=nope") == 401  # 401 {"errorMessage": "Unauthorized"}
    assert await _status(base + "?token=deny") == 403
    async with websockets.connect(base + "?token=good1") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
    auth_event = endpoint.named("auth")[0].event
    assert auth_event["type"] == "REQUEST"
    assert auth_event["methodArn"].endswith("/dev/$connect")
    authorizer = endpoint.named("echo")[0].event["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "user-good1"
    assert authorizer["via"] == "http"
    assert endpoint.named("auth")[0].headers["X-Sockway-Function"] == "h-authorizer"


async def test_timeout_and_bad_answers_fail_only_that_call(
    endpoint: Endpoint, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sockway.apigw")
    gw = await start_gateway({"apis": [http_api(endpoint)]})
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as first, websockets.connect(url) as second:
        await first.send('{"action":"hold"}')
        await wait_until(lambda: len(endpoint.named("hold")) == 1)
        # While the first client's call hangs, the second client is served.
        await second.send('{"action":"echo","from":"second"}')
        assert await second.recv() == '{"action":"echo","from":"second"}'
        frame = str(await asyncio.wait_for(first.recv(), 10))
        assert frame.startswith('{"message": "Endpoint request timed out", "connectionId":"')

        await first.send('{"action":"boom"}')  # HTTP 500
        assert str(await first.recv()).startswith('{"message": "Internal server error"')
        await first.send('{"action":"html"}')  # 200 with a body that is not JSON
        assert str(await first.recv()).startswith('{"message": "Internal server error"')
        await first.send('{"action":"echo"}')
        assert await first.recv() == '{"action":"echo"}'
        await second.send('{"action":"echo"}')
        assert await second.recv() == '{"action":"echo"}'

    where = f"http://127.0.0.1:{endpoint.port}"
    logged = caplog.text
    assert f"handler h-boom failed: EndpointError: {where}/boom answered HTTP 500: 'boom'" in logged
    assert (
        f"handler h-html failed: InvalidResponse: {where}/html answered HTTP 200 with a body "
        "that is not JSON: '<html>not json</html>'"
    ) in logged
    assert "timed out" in logged
    assert SECRET not in logged


async def test_concurrency_is_bounded_per_endpoint(
    endpoint: Endpoint, start_gateway: StartGateway
) -> None:
    config = http_api(endpoint, http={"secret": SECRET, "max_concurrency": 1})
    config["routes"]["hold"]["timeout_s"] = 30
    config["routes"]["hold_quick"] = {
        "handler": endpoint.url("hold"),  # same URL: shares the one slot
        "route_response": True,
        "timeout_s": 0.5,
    }
    gw = await start_gateway({"apis": [config]})
    url = f"ws://127.0.0.1:{gw.port}/dev"
    async with websockets.connect(url) as first, websockets.connect(url) as second:
        await first.send('{"action":"hold"}')
        await wait_until(lambda: len(endpoint.named("hold")) == 1)
        await second.send('{"action":"hold_quick"}')
        frame = str(await asyncio.wait_for(second.recv(), 10))
        assert frame.startswith('{"message": "Endpoint request timed out"')
        assert len(endpoint.named("hold")) == 1  # the second call never reached the endpoint
        await second.send('{"action":"echo"}')  # another URL has its own slots
        assert await second.recv() == '{"action":"echo"}'
        endpoint.release.set()
        assert await asyncio.wait_for(first.recv(), 10) == "released"
        await second.send('{"action":"hold_quick"}')
        assert await asyncio.wait_for(second.recv(), 10) == "released"
