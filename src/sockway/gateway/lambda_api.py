"""The Lambda Invoke API for the configuration's ``functions:`` (README "The Lambda Invoke
API"), so a function calls another as on AWS: ``boto3.client("lambda").invoke(...)`` with
``AWS_ENDPOINT_URL_LAMBDA`` pointing at the gateway.

``POST /2015-03-31/functions/{FunctionName}/invocations`` (Lambda API reference, "Invoke"):

- ``FunctionName``: a name, ``NAME:QUALIFIER``, a partial (``ACCOUNT:function:NAME``) or a full
  ARN; the qualifier (or ``?Qualifier=``) must be ``$LATEST`` (sockway has no versions).
- ``X-Amz-Invocation-Type``: ``RequestResponse`` (default: 200 and the result as JSON),
  ``Event`` (202, run in the background, a failure is logged), ``DryRun`` (204).
- A function error: 200 with ``X-Amz-Function-Error: Unhandled`` and ``{errorMessage,
  errorType, stackTrace}``; a timeout: the same with ``errorType`` ``Sandbox.Timedout``;
  throttled (``reserved_concurrency``): 429 ``TooManyRequestsException``; unknown function:
  404 ``ResourceNotFoundException``; a body that is not JSON: 400
  ``InvalidRequestContentException``. ``X-Amz-Executed-Version: $LATEST`` on every answer.

Requests are not SigV4-checked: the endpoint is for the gateway's own handlers, locally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from sockway.runtimes.base import Integration, Invocation, InvocationError, InvocationTimeout

log = logging.getLogger("sockway.lambda_api")

_ARN = re.compile(
    r"^(?:arn:aws[\w-]*:lambda:[\w-]+:)?(?:\d{12}:)?(?:function:)?([A-Za-z0-9_\-]+)(?::([^:]+))?$"
)
THROTTLED = "TooManyRequestsException"


@dataclass
class LocalFunctions:
    """The functions served by name, and the background ``Event`` invocations in flight."""

    functions: dict[str, tuple[Integration, float]]  # name → (integration, timeout_s)
    new_id: Callable[[], str]
    region: str = "us-east-1"
    account_id: str = "123456789012"
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/2015-03-31/functions/{name}/invocations", self._invoke)

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        return web.json_response(
            {"Type": "User", "message": message},
            status=status,
            headers={"x-amzn-ErrorType": kind, "X-Amz-Executed-Version": "$LATEST"},
        )

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        match = _ARN.match(request.match_info["name"])
        name = match.group(1) if match else None
        qualifier = (match.group(2) if match else None) or request.query.get("Qualifier")
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        if name is None or name not in self.functions or qualifier not in (None, "$LATEST"):
            shown = f"{arn}:{qualifier}" if qualifier else arn
            return self._error(404, "ResourceNotFoundException", f"Function not found: {shown}")
        body = await request.read()
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError:
            return self._error(
                400, "InvalidRequestContentException", "Could not parse request body into json"
            )
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind == "DryRun":
            return web.Response(status=204, headers={"X-Amz-Executed-Version": "$LATEST"})
        integration, timeout_s = self.functions[name]
        invocation = Invocation(self.new_id(), timeout_s)
        if kind == "Event":
            task = asyncio.get_running_loop().create_task(
                self._background_call(name, integration, event, invocation)
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return web.Response(status=202, headers={"X-Amz-Executed-Version": "$LATEST"})
        if kind != "RequestResponse":
            return self._error(
                400, "InvalidParameterValueException", f"invalid InvocationType {kind!r}"
            )
        headers = {
            "X-Amz-Executed-Version": "$LATEST",
            "x-amzn-RequestId": invocation.request_id,
            "Content-Type": "application/json",
        }
        try:
            result = await integration.invoke(event, invocation)
        except InvocationTimeout:
            timed_out = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"{invocation.request_id} Task timed out after "
                f"{timeout_s:.2f} seconds",
            }
            headers["X-Amz-Function-Error"] = "Unhandled"
            return web.Response(body=orjson.dumps(timed_out), headers=headers)
        except InvocationError as exc:
            if exc.error_type == THROTTLED:
                return self._error(429, THROTTLED, "Rate Exceeded.")
            error: dict[str, Any] = {
                "errorMessage": exc.error_message,
                "errorType": exc.error_type,
                "stackTrace": exc.stack.splitlines() if exc.stack else [],
            }
            headers["X-Amz-Function-Error"] = "Unhandled"
            return web.Response(body=orjson.dumps(error), headers=headers)
        return web.Response(body=json.dumps(result).encode(), headers=headers)

    async def _background_call(
        self, name: str, integration: Integration, event: Any, invocation: Invocation
    ) -> None:
        try:
            await integration.invoke(event, invocation)
        except (InvocationError, InvocationTimeout) as exc:
            log.warning("%s (InvocationType Event) failed: %s", name, exc)

    async def drain(self) -> None:
        """Let the ``Event`` invocations in flight finish (called at gateway stop)."""
        if self._background:
            await asyncio.wait(set(self._background))
