"""How an HTTP endpoint's answers map to results and errors (runtimes/http.py).

A real aiohttp endpoint answers; ``HttpIntegration`` is called directly.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from sockway.runtimes.base import Invocation, InvocationError
from sockway.runtimes.http import HttpIntegration, HttpTransport, signature

ERROR = {"errorType": "KeyError", "errorMessage": "'id'", "stackTrace": ["  File x, line 1\n"]}


def _answers() -> dict[str, Any]:
    return {
        "ok": lambda: web.json_response({"statusCode": 200, "body": "hi"}),
        "empty": lambda: web.Response(status=204),
        "error200": lambda: web.json_response(ERROR),
        "flagged": lambda: web.json_response(ERROR, headers={"X-Amz-Function-Error": "Unhandled"}),
        "error500": lambda: web.json_response(ERROR, status=500),
        "unauthorized": lambda: web.json_response({"errorMessage": "Unauthorized"}, status=403),
        "text404": lambda: web.Response(status=404, text="no such page"),
        "redirect": lambda: web.Response(status=302, headers={"Location": "/ok"}),
        "big": lambda: web.json_response({"pad": "x" * 5000}),
    }


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    answers = _answers()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        response: web.Response = answers[request.match_info["name"]]()
        return response

    app = web.Application()
    app.router.add_post("/{name}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[HttpTransport]:
    shared = HttpTransport()
    yield shared
    await shared.close()


async def _call(transport: HttpTransport, url: str, max_bytes: int = 1_000_000) -> Any:
    transport.register(url, 4)
    integration = HttpIntegration(
        url=url,
        function_name="a-route",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:a-route",
        transport=transport,
        signing_key=b"k",
        headers={},
        max_response_bytes=max_bytes,
    )
    return await integration.invoke({"x": 1}, Invocation("req-1", 5))


async def test_results(base_url: str, transport: HttpTransport) -> None:
    assert await _call(transport, base_url + "/ok") == {"statusCode": 200, "body": "hi"}
    assert await _call(transport, base_url + "/empty") is None
    # 200 with an error object and no X-Amz-Function-Error: a result, as a Lambda returning it.
    assert await _call(transport, base_url + "/error200") == ERROR


@pytest.mark.parametrize(
    ("path", "error_type", "message", "in_stack"),
    [
        ("flagged", "KeyError", "'id'", "answered HTTP 200"),
        ("error500", "KeyError", "'id'", "File x, line 1"),
        ("unauthorized", "EndpointError", "Unauthorized", "answered HTTP 403"),
        ("text404", "EndpointError", "answered HTTP 404: 'no such page'", ""),
        ("redirect", "EndpointError", "answered HTTP 302", ""),
        ("big", "ResponseTooLarge", "more than 1000 bytes", ""),
    ],
)
async def test_errors(
    base_url: str,
    transport: HttpTransport,
    path: str,
    error_type: str,
    message: str,
    in_stack: str,
) -> None:
    with pytest.raises(InvocationError) as info:
        await _call(transport, f"{base_url}/{path}", max_bytes=1000)
    assert info.value.error_type == error_type
    assert message in info.value.error_message
    assert in_stack in info.value.stack


async def test_unreachable_endpoint(transport: HttpTransport, unused_tcp_port: int) -> None:
    with pytest.raises(InvocationError) as info:
        await _call(transport, f"http://127.0.0.1:{unused_tcp_port}/x")
    assert info.value.error_type == "EndpointUnreachable"
    assert f"POST http://127.0.0.1:{unused_tcp_port}/x failed" in info.value.error_message


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature(b"key", 1700000000, b"{}") == f"t=1700000000,v1={expected}"
