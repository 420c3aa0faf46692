"""REQUEST authorizer on $connect (apigw spec §5)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import StartGateway, write_handlers
from tests.e2e.support import HANDLERS, api, of_type, recorded, wait_until

AUTH = """
CALLS = []


def handler(event, context):
    CALLS.append(event)
    token = event["queryStringParameters"].get("token")
    if token == "raise":
        raise Exception("Unauthorized")
    if token == "crash":
        raise KeyError("bug")
    if token == "bad":
        return {"principalId": "u"}
    effect = "Allow" if token.startswith("good") else "Deny"
    return {
        "principalId": "user-" + token,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect,
                           "Resource": event["methodArn"]}],
        },
        "context": {"tenant": "acme", "admin": True, "level": 3},
    }
"""


async def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    return info.value.response.status_code


async def test_authorizer_decisions_and_context(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = write_handlers(tmp_path / "h", {"rec.py": HANDLERS, "auth.py": AUTH})
    config = api(
        code,
        authorizer={
            "handler": "auth.handler",
            "identity_source": ["route.request.querystring.token"],
        },
    )
    gw = await start_gateway({"apis": [config]})
    base = f"ws://127.0.0.1:{gw.port}/dev"
    calls = sys.modules["auth"].CALLS

    assert await _status(base) == 401  # identity source missing: authorizer not invoked
    assert await _status(base + "?token=") == 401
    assert calls == []
    assert await _status(base + "?token=raise") == 401  # Exception("Unauthorized")
    assert await _status(base + "?token=deny") == 403  # Deny policy
    assert await _status(base + "?token=crash") == 500  # any other error
    assert await _status(base + "?token=bad") == 500  # malformed answer
    assert of_type(recorded(), "CONNECT") == []  # $connect never ran for a rejected client

    event = calls[1]
    assert event["type"] == "REQUEST"
    assert event["methodArn"].endswith("/dev/$connect")
    assert event["headers"]["Upgrade"] == "websocket"
    assert event["stageVariables"] == {}

    async with websockets.connect(base + "?token=good1") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
    await wait_until(lambda: len(of_type(recorded(), "DISCONNECT")) == 1)
    for event in recorded():
        authorizer = event["requestContext"]["authorizer"]
        assert authorizer["principalId"] == "user-good1"
        assert authorizer["tenant"] == "acme"
        assert authorizer["admin"] == "true"  # stringified as REST does (spec §5.4)
        assert authorizer["level"] == "3"
        assert isinstance(authorizer["integrationLatency"], int)
    assert {e["requestContext"]["eventType"] for e in recorded()} == {
        "CONNECT",
        "MESSAGE",
        "DISCONNECT",
    }


async def test_header_identity_source_is_case_insensitive(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    code = write_handlers(
        tmp_path / "h",
        {
            "rec.py": HANDLERS,
            "auth.py": AUTH.replace(
                'event["queryStringParameters"].get("token")', 'event["headers"]["Auth"]'
            ),
        },
    )
    gw = await start_gateway({"apis": [api(code, authorizer={"handler": "auth.handler"})]})
    base = f"ws://127.0.0.1:{gw.port}/dev"
    assert await _status(base) == 401
    async with websockets.connect(base, additional_headers={"Auth": "good2"}) as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
