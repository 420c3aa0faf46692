"""Real AWS Lambda as handlers (README "AWS Lambda as handlers").

AWS is not reachable from tests: sockway's real botocore client talks to ``FakeLambda``, a local
server implementing the Invoke API's wire format that verifies every SigV4 signature.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import StartGateway
from tests.e2e.fake_lambda import FakeLambda, Throttled
from tests.e2e.support import wait_until

ACCESS_KEY = "AKIDSOCKWAYLAMBDA"
SECRET_KEY = "lambda-test-secret"
AUTH_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:auth"


class Functions:
    """The Lambda functions "deployed" on the fake."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    def table(self) -> dict[str, Any]:
        return {
            "connect": lambda event, context: {"statusCode": 200},
            "disconnect": lambda event, context: {"statusCode": 200},
            "echo": lambda event, context: {"statusCode": 200, "body": event["body"]},
            "audit": lambda event, context: {"statusCode": 200, "body": "must not be sent"},
            "fail": self.fail,
            "throttled": self.throttled,
            "slow": self.slow,
            "auth": self.auth,
        }

    @staticmethod
    def fail(event: dict[str, Any], context: Any) -> Any:
        raise ValueError("lambda bug on purpose")

    @staticmethod
    def throttled(event: dict[str, Any], context: Any) -> Any:
        raise Throttled

    async def slow(self, event: dict[str, Any], context: Any) -> Any:
        await self.release.wait()
        return {"statusCode": 200, "body": "slow done"}

    @staticmethod
    def auth(event: dict[str, Any], context: Any) -> Any:
        token = event["queryStringParameters"]["token"]
        if token == "nope":
            raise Exception("Unauthorized")
        effect = "Allow" if token.startswith("good") else "Deny"
        return {
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
            "context": {"via": "lambda"},
        }


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[FakeLambda]:
    # botocore's standard chain finds these in the environment; no user files are read.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"):
        monkeypatch.delenv(name, raising=False)
    functions = Functions()
    server = FakeLambda(functions.table(), {ACCESS_KEY: SECRET_KEY})
    await server.start()
    yield server
    functions.release.set()
    await server.stop()


def lambda_api(fake: FakeLambda, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "l",
        "type": "websocket",
        "stage": "dev",
        "region": "ap-southeast-2",
        "lambda": {"endpoint_url": fake.url},
        "routes": {
            "$connect": "lambda:connect",
            "$disconnect": "lambda:disconnect",
            "echo": {"handler": "lambda:echo:live", "route_response": True},
            "audit": {
                "handler": "lambda:audit",
                "route_response": True,
                "invocation_type": "Event",
            },
            "fail": "lambda:fail",
            "throttled": "lambda:throttled",
            "missing": "lambda:missing",
            "slow": {"handler": "lambda:slow", "route_response": True, "timeout_s": 0.5},
        },
    }
    config.update(overrides)
    return config


async def _status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url):
            pass
    return info.value.response.status_code


async def test_route_round_trip_signed_in_the_api_region(
    fake: FakeLambda, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [lambda_api(fake)]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"echo","n":1}')
        assert await ws.recv() == '{"action":"echo","n":1}'
    await wait_until(lambda: len(fake.named("disconnect")) == 1)
    assert [i.function for i in fake.invokes] == ["connect", "echo", "disconnect"]
    assert fake.rejected == []
    for invoke in fake.invokes:
        assert invoke.region == "ap-southeast-2"  # lambda:NAME → the API's region
        assert invoke.access_key_id == ACCESS_KEY  # botocore's credential chain (environment)
        assert invoke.invocation_type == "RequestResponse"
    echo = fake.named("echo")[0]
    assert echo.qualifier == "live"
    assert echo.event["requestContext"]["eventType"] == "MESSAGE"
    assert echo.event["body"] == '{"action":"echo","n":1}'
    assert fake.named("connect")[0].event["requestContext"]["eventType"] == "CONNECT"


async def test_authorizer_decision_through_lambda_arn(
    fake: FakeLambda, start_gateway: StartGateway
) -> None:
    config = lambda_api(
        fake,
        authorizer={"handler": AUTH_ARN, "identity_source": ["route.request.querystring.token"]},
    )
    gw = await start_gateway({"apis": [config]})
    base = f"ws://127.0.0.1:{gw.port}/dev"
    assert await _status(base + "?token=nope") == 401  # FunctionError "Unauthorized"
    assert await _status(base + "?token=deny") == 403
    async with websockets.connect(base + "?token=good1") as ws:
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'
    auth = fake.named("auth")
    assert len(auth) == 3
    assert {i.region for i in auth} == {"eu-west-1"}  # the ARN's region, not the API's
    assert auth[0].event["type"] == "REQUEST"
    assert auth[0].event["methodArn"].endswith("/dev/$connect")
    authorizer = fake.named("echo")[0].event["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "user-good1"
    assert authorizer["via"] == "lambda"


async def test_event_invocation_type_sends_nothing_back(
    fake: FakeLambda, start_gateway: StartGateway
) -> None:
    gw = await start_gateway({"apis": [lambda_api(fake)]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev") as ws:
        await ws.send('{"action":"audit","what":"login"}')
        await wait_until(lambda: len(fake.named("audit")) == 1)
        await ws.send('{"action":"echo"}')
        assert await ws.recv() == '{"action":"echo"}'  # the two-way audit route sent nothing
        await ws.send('{"action":"echo","again":true}')
        assert await ws.recv() == '{"action":"echo","again":true}'
    audit = fake.named("audit")[0]
    assert audit.invocation_type == "Event"
    assert audit.event["body"] == '{"action":"audit","what":"login"}'
    assert fake.named("echo")[0].invocation_type == "RequestResponse"


async def test_function_error_throttling_and_timeout_fail_only_that_call(
    fake: FakeLambda, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sockway.apigw")
    gw = await start_gateway({"apis": [lambda_api(fake)]})
    url = f"ws://127.0.0.1:{gw.port}/dev"
    internal = '{"message": "Internal server error", "connectionId":"'
    async with websockets.connect(url) as first, websockets.connect(url) as second:
        await first.send('{"action":"slow"}')
        await wait_until(lambda: len(fake.named("slow")) == 1)
        await second.send('{"action":"echo","from":"second"}')  # served while "slow" runs
        assert await second.recv() == '{"action":"echo","from":"second"}'
        frame = str(await asyncio.wait_for(first.recv(), 10))
        assert frame.startswith('{"message": "Endpoint request timed out", "connectionId":"')

        for action in ("fail", "throttled", "missing"):
            await first.send(f'{{"action":"{action}"}}')
            assert str(await first.recv()).startswith(internal), action
        assert len(fake.named("throttled")) == 1  # not retried (lambda.max_attempts: 1)

        fake.secrets = {ACCESS_KEY: "another-secret"}  # the fake now refuses our signature
        await second.send('{"action":"echo"}')
        assert str(await second.recv()).startswith(internal)
        assert fake.rejected == ["InvalidSignatureException"]
        fake.secrets = {ACCESS_KEY: SECRET_KEY}
        await first.send('{"action":"echo"}')
        assert await first.recv() == '{"action":"echo"}'

    logged = caplog.text
    assert "handler l-fail failed: ValueError: lambda bug on purpose" in logged
    assert "Lambda fail (ap-southeast-2), Unhandled" in logged
    assert "handler l-throttled failed: TooManyRequestsException: Lambda throttled" in logged
    assert "handler l-missing failed: ResourceNotFoundException" in logged
    assert "handler l-echo failed: InvalidSignatureException" in logged
    assert "handler l-slow timed out" in logged
    assert SECRET_KEY not in logged


async def test_api_level_event_type_spares_the_authorizer_and_env_endpoint(
    fake: FakeLambda, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", fake.url)  # botocore's own endpoint setting
    config = lambda_api(
        fake,
        authorizer={"handler": AUTH_ARN, "identity_source": ["route.request.querystring.token"]},
    )
    config["lambda"] = {"invocation_type": "Event"}  # no endpoint_url: the environment's
    config["routes"]["$connect"] = {
        "handler": "lambda:connect",
        "invocation_type": "RequestResponse",
    }
    del config["routes"]["$disconnect"]
    gw = await start_gateway({"apis": [config]})
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/dev?token=good2") as ws:
        await ws.send('{"action":"echo"}')
        await wait_until(lambda: len(fake.named("echo")) == 1)
    types = {i.function: i.invocation_type for i in fake.invokes}
    assert types == {"auth": "RequestResponse", "connect": "RequestResponse", "echo": "Event"}
