"""Real AWS Lambda functions as handlers, through the Lambda Invoke API (botocore).

Contract (README "AWS Lambda as handlers"):

- ``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`` is invoked in the ARN's region;
  ``lambda:NAME[:QUALIFIER]`` in the API's ``region``. Credentials come from botocore's standard
  chain (environment, ``profile``/shared files, SSO, container and instance roles).
- ``RequestResponse``: the payload is the handler's result. ``Event``: Lambda queues the event
  (202) and the result is ``null`` — a two-way route then sends nothing.
- ``X-Amz-Function-Error`` (``Unhandled``/``Handled``): the payload's ``errorType`` /
  ``errorMessage`` / ``stackTrace`` become ``InvocationError`` (so ``Unauthorized`` makes an
  authorizer answer 401). An Invoke API error (``TooManyRequestsException`` when throttled,
  ``ResourceNotFoundException``, ``AccessDeniedException``, ...) is ``InvocationError`` with
  that code, as the client sees it on API Gateway: "Internal server error". Calls are not
  retried unless ``lambda.max_attempts`` > 1.
- The route's timeout gives ``InvocationTimeout``. The call's thread stops reading one second
  later (botocore's read timeout is the route's timeout + 1 s, one client per distinct
  timeout), so a hung function never holds a thread, or the process's exit, for long.
- botocore is blocking: calls run on a thread pool of ``lambda.max_concurrency`` threads per
  (region, endpoint, options), separate from the in-process handlers' pool so that slow
  functions never starve local handlers; each pool's clients are created on first use, on
  the pool's thread (building one may look up credentials over the network), with as many
  pooled connections as threads.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout
from sockway.runtimes.http import function_error_of
from sockway.runtimes.refs import LambdaTarget
from sockway.runtimes.settings import InvocationType, LambdaSettings

# botocore stops reading this long after the caller's deadline (the call is abandoned anyway).
READ_MARGIN_S = 1


class _ClientPool:
    """botocore Lambda clients (one per read timeout) and the threads that call them."""

    def __init__(
        self,
        session: botocore.session.Session,
        lock: threading.Lock,
        region: str,
        s: LambdaSettings,
    ) -> None:
        self._session = session
        self._lock = lock
        self._region = region
        self._settings = s
        self._clients: dict[int, Any] = {}
        self.executor = ThreadPoolExecutor(s.max_concurrency, thread_name_prefix="lambda")

    def client(self, read_timeout_s: int) -> Any:
        client = self._clients.get(read_timeout_s)
        if client is not None:
            return client
        with self._lock:  # botocore sessions are not safe to create clients concurrently
            client = self._clients.get(read_timeout_s)
            if client is None:
                s = self._settings
                client = self._clients[read_timeout_s] = self._session.create_client(
                    "lambda",
                    region_name=self._region,
                    endpoint_url=s.endpoint_url,
                    config=Config(
                        connect_timeout=s.connect_timeout_s,
                        read_timeout=read_timeout_s,
                        retries={"total_max_attempts": s.max_attempts, "mode": "standard"},
                        max_pool_connections=s.max_concurrency,
                        user_agent_extra="sockway",
                    ),
                )
            return client

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for client in self._clients.values():
                client.close()  # idle pooled connections; calls in flight end by read timeout
            self._clients.clear()


class LambdaClients:
    """The Lambda clients of one gateway, keyed by region, endpoint and options."""

    def __init__(self) -> None:
        self._sessions: dict[str | None, botocore.session.Session] = {}
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, LambdaSettings], _ClientPool] = {}

    def pool(self, region: str, settings: LambdaSettings) -> _ClientPool:
        # invocation_type does not change the client: pools are shared across it.
        key = (region, settings.model_copy(update={"invocation_type": "RequestResponse"}))
        pool = self._pools.get(key)
        if pool is None:
            session = self._sessions.get(settings.profile)
            if session is None:
                session = self._sessions[settings.profile] = botocore.session.Session(
                    profile=settings.profile
                )
            pool = self._pools[key] = _ClientPool(session, self._lock, region, settings)
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class LambdaIntegration:
    """One handler slot served by a Lambda function."""

    def __init__(
        self,
        *,
        target: LambdaTarget,
        function_name: str,
        invocation_type: InvocationType,
        pool: _ClientPool,
    ) -> None:
        self._target = target
        self._function_name = function_name
        self._invocation_type = invocation_type
        self._pool = pool

    @property
    def function_name(self) -> str:
        return self._function_name

    async def invoke(self, event: dict[str, Any], invocation: Invocation) -> Any:
        loop = asyncio.get_running_loop()
        read_timeout_s = math.ceil(invocation.timeout_s) + READ_MARGIN_S
        call = functools.partial(self._call, orjson.dumps(event), read_timeout_s)
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._pool.executor, call), invocation.timeout_s
            )
        except TimeoutError as exc:
            raise InvocationTimeout(
                f"Lambda {self._target.function_name} did not answer within "
                f"{invocation.timeout_s:g} s"
            ) from exc
        except RuntimeError as exc:  # the pool was shut down: the gateway is stopping
            raise InvocationError("ServiceUnavailable", str(exc)) from exc

    def _call(self, payload: bytes, read_timeout_s: int) -> Any:
        """Runs on the pool's thread: one Invoke call, mapped to a result or an error."""
        target = self._target
        params: dict[str, Any] = {
            "FunctionName": target.function_name,
            "InvocationType": self._invocation_type,
            "Payload": payload,
        }
        if target.qualifier is not None and not target.function_name.startswith("arn:"):
            params["Qualifier"] = target.qualifier
        where = f"Lambda {target.function_name} ({target.region})"
        try:
            response = self._pool.client(read_timeout_s).invoke(**params)
            body: bytes = response["Payload"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "ClientError")
            message = str(error.get("Message") or exc)
            raise InvocationError(code, f"{where}: {message}") from exc
        except BotoCoreError as exc:
            raise InvocationError(type(exc).__name__, f"{where}: {exc}") from exc
        function_error = response.get("FunctionError")
        if self._invocation_type == "Event" and not function_error:
            return None
        try:
            value = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            raise InvocationError(
                "InvalidResponse", f"{where} returned a payload that is not JSON"
            ) from None
        if function_error:
            error = function_error_of(value, function_error)
            if error is None:
                raise InvocationError(function_error, f"{where} failed: {value!r:.200}")
            error_type, message, stack = error
            trailer = f"({where}, {function_error})"
            raise InvocationError(error_type, message, f"{stack}\n{trailer}" if stack else trailer)
        return value
