"""Webhook targets: an HTTP URL (aiohttp client) or an AWS Lambda function (botocore).

Lambda (pusher spec §4.2): invoked with ``{"payload": {time_ms, events}, "headers": {...}}``,
``InvocationType`` ``Event`` when ``lambda.async`` is true, else ``RequestResponse``. This is a
direct botocore call; when the runtimes branch's Lambda integration lands, ``LambdaTarget`` is
the one place to switch to ``IntegrationFactory.build(FunctionSpec(...))``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from sockway.pusher.settings import WebhookSpec
from sockway.pusher.webhooks import DeliveryFailed, WebhookTarget
from sockway.runtimes.base import Integration, Invocation, InvocationError, InvocationTimeout

USER_AGENT = "sockway-webhooks/1.0"


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class HttpTarget:
    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    @property
    def description(self) -> str:
        return self.url

    async def deliver(self, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self.url,
                data=body,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json", **headers},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(
                        f"HTTP {response.status}", _retryable_status(response.status)
                    )
        except (aiohttp.ClientError, OSError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}", True) from exc
        except TimeoutError as exc:
            raise DeliveryFailed(f"no answer within {timeout_s} s", True) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class LambdaTarget:
    def __init__(self, spec: WebhookSpec) -> None:
        assert spec.lambda_function is not None
        self.function = spec.lambda_function
        self.region = spec.lambda_region
        options = spec.lambda_
        self.invocation_type = (
            "Event" if options is not None and options.async_ else ("RequestResponse")
        )
        self.endpoint_url = options.endpoint_url if options is not None else None
        self.credentials = (
            (options.access_key_id, options.secret_access_key)
            if options is not None and options.access_key_id and options.secret_access_key
            else None
        )
        self._client: Any = None

    @property
    def description(self) -> str:
        return f"lambda:{self.function}"

    def _make_client(self, timeout_s: float) -> Any:
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        kwargs: dict[str, Any] = {
            "region_name": self.region,
            "endpoint_url": self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_LAMBDA"),
            "config": botocore.config.Config(
                read_timeout=timeout_s, connect_timeout=timeout_s, retries={"max_attempts": 1}
            ),
        }
        if self.credentials is not None:
            kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = self.credentials
        return session.create_client("lambda", **kwargs)

    def _invoke(self, payload: bytes, timeout_s: float) -> None:
        import botocore.exceptions

        if self._client is None:
            self._client = self._make_client(timeout_s)
        try:
            response = self._client.invoke(
                FunctionName=self.function, InvocationType=self.invocation_type, Payload=payload
            )
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
            raise DeliveryFailed(str(exc), _retryable_status(status)) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise DeliveryFailed(str(exc), True) from exc
        if response.get("FunctionError"):
            raise DeliveryFailed(f"function error: {response['FunctionError']}", True)

    async def deliver(self, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
        payload = b'{"payload":' + body + b',"headers":' + orjson.dumps(headers) + b"}"
        await asyncio.get_running_loop().run_in_executor(None, self._invoke, payload, timeout_s)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class HandlerTarget:
    """A webhook delivered to a handler of any runtime (``IntegrationFactory``), with the
    event a Lambda webhook gets: ``{"payload": {time_ms, events}, "headers": {...}}``. A
    handler error or timeout is a failed attempt, retried like an HTTP 5xx."""

    def __init__(self, integration: Integration, new_id: Callable[[], str]) -> None:
        self.integration = integration
        self.new_id = new_id

    @property
    def description(self) -> str:
        return self.integration.function_name

    async def deliver(self, body: bytes, headers: dict[str, str], timeout_s: float) -> None:
        event = {"payload": orjson.loads(body), "headers": headers}
        try:
            await self.integration.invoke(event, Invocation(self.new_id(), timeout_s))
        except InvocationTimeout as exc:
            raise DeliveryFailed(f"no answer within {timeout_s} s", True) from exc
        except InvocationError as exc:
            raise DeliveryFailed(f"function error: {exc}", True) from exc

    async def close(self) -> None:
        return None


def build_target(
    spec: WebhookSpec,
    handler: Callable[[WebhookSpec], Integration] | None = None,
    new_id: Callable[[], str] | None = None,
) -> WebhookTarget:
    if spec.url is not None:
        return HttpTarget(spec.url)
    if spec.handler is not None:
        assert handler is not None and new_id is not None, "a handler webhook needs them"
        return HandlerTarget(handler(spec), new_id)
    return LambdaTarget(spec)
