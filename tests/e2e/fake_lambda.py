"""A local server speaking the Lambda Invoke API's wire format, for the Lambda runtime tests.

``POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=Q]`` with the payload as
body and ``X-Amz-Invocation-Type``. Every request's SigV4 signature is verified with botocore
(``sockway.frontdoor.sigv4.verify``, service ``lambda``) against the test's credentials; a bad one
gets 403 with ``x-amzn-ErrorType`` as AWS answers. The function (a Python callable taking
``(event, context)``, sync or async) then runs:

- ``RequestResponse``: 200 with its JSON result; a raised exception gives 200 with
  ``X-Amz-Function-Error: Unhandled`` and ``{"errorMessage", "errorType", "stackTrace"}``;
- ``Event``: 202 with an empty body, the function runs after the answer;
- a function raising ``Throttled`` (or any call while ``throttle`` is set): 429
  ``TooManyRequestsException``; an unknown function: 404 ``ResourceNotFoundException``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import re
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
from aiohttp import web

from sockway.frontdoor.sigv4 import SigV4Failure, verify

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


class Throttled(Exception):
    """Raised by a test function to make the fake answer 429 TooManyRequestsException."""


@dataclass
class Invoke:
    function: str
    qualifier: str | None
    region: str
    invocation_type: str
    event: Any
    access_key_id: str


class FakeLambda:
    def __init__(self, functions: dict[str, Callable[..., Any]], secrets: dict[str, str]) -> None:
        self.functions = functions
        self.secrets = dict(secrets)
        self.invokes: list[Invoke] = []
        self.rejected: list[str] = []
        self.background: set[asyncio.Task[Any]] = set()
        app = web.Application()
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self.invoke)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        self.url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        await self.runner.cleanup()

    def named(self, name: str) -> list[Invoke]:
        return [i for i in self.invokes if i.function == name]

    async def invoke(self, request: web.Request) -> web.Response:
        body = await request.read()
        # One fake serves every region (tests assert which one was signed for), so the region
        # checked is the one the signature names; the service must be lambda.
        scope = _SCOPE.search(request.headers.get("Authorization", ""))
        try:
            akid = verify(
                method=request.method,
                url=f"http://{request.host}{request.raw_path}",
                headers=list(request.headers.items()),
                body=body,
                secrets=self.secrets,
                now=dt.datetime.now(dt.UTC),
                service="lambda",
                region=scope["region"] if scope is not None else "",
            )
        except SigV4Failure as exc:
            self.rejected.append(exc.error_type)
            return _error(403, exc.error_type, exc.message)
        assert scope is not None and scope["service"] == "lambda", "signed for another service"
        name = request.match_info["name"]
        qualifier = request.query.get("Qualifier")
        if name.startswith("arn:"):  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
            parts = name.split(":")
            name, qualifier = parts[6], parts[7] if len(parts) > 7 else qualifier
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        function = self.functions.get(name)
        if function is None:
            return _error(
                404, "ResourceNotFoundException", f"Function not found: {name}", key="Message"
            )
        event = orjson.loads(body)
        self.invokes.append(Invoke(name, qualifier, scope["region"], invocation_type, event, akid))
        context = SimpleNamespace(function_name=name, aws_request_id=str(uuid.uuid4()))
        if invocation_type == "Event":
            task = asyncio.get_running_loop().create_task(_run(function, event, context))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
            return web.Response(status=202)
        try:
            result = await _run(function, event, context)
        except Throttled:
            return _error(429, "TooManyRequestsException", "Rate Exceeded.")
        except Exception as exc:
            payload = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "requestId": context.aws_request_id,
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return web.Response(
                body=orjson.dumps(payload),
                headers={"X-Amz-Function-Error": "Unhandled", "X-Amz-Executed-Version": "$LATEST"},
                content_type="application/json",
            )
        return web.Response(
            body=orjson.dumps(result),
            headers={"X-Amz-Executed-Version": "$LATEST"},
            content_type="application/json",
        )


async def _run(function: Callable[..., Any], event: Any, context: Any) -> Any:
    result = function(event, context)
    if inspect.isawaitable(result):
        result = await result
    return result


def _error(status: int, error_type: str, message: str, key: str = "message") -> web.Response:
    body = {"Type": "User", key: message}
    if error_type == "TooManyRequestsException":
        body["Reason"] = "ReservedFunctionConcurrentInvocationLimitExceeded"
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())},
        content_type="application/json",
    )
