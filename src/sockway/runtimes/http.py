"""HTTP endpoints as handlers: the event as a JSON POST, the answer as a Lambda result.

Contract (README "HTTP endpoints as handlers"):

- Request: ``POST <url>`` with the event as the JSON body (``Content-Type: application/json``),
  the API's ``http.headers``, ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``
  (epoch ms), ``Lambda-Runtime-Invoked-Function-Arn`` (the headers Lambda's runtime API gives a
  function), ``X-Sockway-Function`` and, with a secret, ``X-Sockway-Signature:
  t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``. Redirects are not followed.
- Answer: 2xx with a JSON body is the handler's result (an empty body is ``null``). A JSON
  ``{"errorType", "errorMessage"}`` with 200 is a *result* (as when a Lambda function returns
  that object) unless the answer carries ``X-Amz-Function-Error``, which makes it a function
  error as on the Lambda Invoke API. A non-2xx answer is a function error: its ``errorType`` /
  ``errorMessage`` when the body is such an object (so ``{"errorMessage": "Unauthorized"}``
  makes an authorizer answer 401), otherwise ``EndpointError``. A body that is not JSON is
  ``InvalidResponse``; an unreachable endpoint ``EndpointUnreachable``. All are
  ``InvocationError`` and logged by the caller with the status and the start of the body.
- The route's timeout covers waiting for a free slot, connecting and reading
  (``InvocationTimeout``). At most ``http.max_concurrency`` requests per URL are in flight.
- One ``aiohttp.ClientSession`` per gateway (keep-alive connections are reused), created on the
  running loop at the first call and closed when the gateway stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import aiohttp
import orjson

from sockway import __version__
from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout
from sockway.runtimes.refs import safe_url

SIGNATURE_HEADER = "X-Sockway-Signature"
FUNCTION_ERROR_HEADER = "X-Amz-Function-Error"
_SNIPPET_CHARS = 200


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Sockway-Signature`` value: ``t=<timestamp>,v1=<hex HMAC-SHA256>``.

    The signed message is the decimal timestamp, a dot, and the exact body bytes.
    """
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class HttpTransport:
    """What all HTTP handlers of a gateway share: one client session and per-URL limits."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limits: dict[str, int] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}

    def register(self, url: str, max_concurrency: int) -> None:
        """Declare an endpoint; handlers sharing a URL share the smallest configured limit."""
        self._limits[url] = min(self._limits.get(url, max_concurrency), max_concurrency)

    def slots(self, url: str) -> asyncio.Semaphore:
        slots = self._slots.get(url)
        if slots is None:
            slots = self._slots[url] = asyncio.Semaphore(self._limits[url])
        return slots

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # limit=0: the per-URL semaphores bound the connections, not one global pool.
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": f"sockway/{__version__}"},
                # Timeouts come from each invocation's deadline.
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class HttpIntegration:
    """One handler slot served by an HTTP endpoint."""

    def __init__(
        self,
        *,
        url: str,
        function_name: str,
        function_arn: str,
        transport: HttpTransport,
        signing_key: bytes | None,
        headers: dict[str, str],
        max_response_bytes: int,
    ) -> None:
        self._url = url
        self._where = safe_url(url)
        self._function_name = function_name
        self._function_arn = function_arn
        self._transport = transport
        self._key = signing_key
        self._headers = dict(headers)
        self._max_bytes = max_response_bytes

    @property
    def function_name(self) -> str:
        return self._function_name

    def _request_headers(
        self, body: bytes, invocation: Invocation, deadline: float
    ) -> dict[str, str]:
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(deadline * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": self._function_arn,
            "X-Sockway-Function": self._function_name,
        }
        if self._key is not None:
            headers[SIGNATURE_HEADER] = signature(self._key, int(time.time()), body)
        return headers

    async def invoke(self, event: dict[str, Any], invocation: Invocation) -> Any:
        body = orjson.dumps(event)
        deadline = time.time() + invocation.timeout_s
        try:
            async with asyncio.timeout(invocation.timeout_s), self._transport.slots(self._url):
                headers = self._request_headers(body, invocation, deadline)
                async with self._transport.session().post(
                    self._url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    payload = await read_body(response, self._max_bytes, self._where)
                    status = response.status
                    function_error = response.headers.get(FUNCTION_ERROR_HEADER)
        except TimeoutError as exc:
            raise InvocationTimeout(
                f"{self._where} did not answer within {invocation.timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise InvocationError(
                "EndpointUnreachable", f"POST {self._where} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return self._result(status, function_error, payload)

    def _result(self, status: int, function_error: str | None, payload: bytes) -> Any:
        where = f"{self._where} answered HTTP {status}"
        ok = 200 <= status < 300
        if ok and not payload.strip():
            if function_error:
                raise InvocationError(function_error, f"{where} with {FUNCTION_ERROR_HEADER}")
            return None
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if ok:
                raise InvocationError(
                    "InvalidResponse", f"{where} with a body that is not JSON: {_snippet(payload)}"
                ) from None
            raise InvocationError("EndpointError", f"{where}: {_snippet(payload)}") from None
        if ok and not function_error:
            return value
        error = function_error_of(value, function_error or "EndpointError")
        if error is None:
            if ok:
                raise InvocationError(
                    function_error or "Unhandled",
                    f"{where} with {FUNCTION_ERROR_HEADER} and no errorMessage",
                )
            raise InvocationError("EndpointError", f"{where}: {_snippet(payload)}")
        error_type, message, stack = error
        raise InvocationError(error_type, message, f"{stack}\n({where})" if stack else f"({where})")


async def read_body(response: aiohttp.ClientResponse, max_bytes: int, where: str) -> bytes:
    """The whole response body; ``ResponseTooLarge`` past ``max_bytes`` (read no further)."""
    length = response.content_length
    if length is None or length <= max_bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    raise InvocationError(
        "ResponseTooLarge",
        f"{where} answered HTTP {response.status} with more than "
        f"{max_bytes} bytes (http.max_response_bytes)",
    )


def function_error_of(value: Any, default_type: str) -> tuple[str, str, str] | None:
    """``(errorType, errorMessage, stack)`` of a Lambda error object, or None if it is not one.

    ``default_type`` stands in for a missing ``errorType`` (Lambda's own timeout message has
    none)."""
    if not isinstance(value, dict) or "errorMessage" not in value:
        return None
    error_type = value.get("errorType")
    trace = value.get("stackTrace")
    if isinstance(trace, list):
        stack = "\n".join(str(line).rstrip("\n") for line in trace)
    else:
        stack = str(trace) if trace else ""
    return (
        str(error_type) if error_type else default_type,
        str(value.get("errorMessage")),
        stack,
    )


def _snippet(payload: bytes) -> str:
    text = payload[: _SNIPPET_CHARS * 4].decode("utf-8", "replace")
    if len(text) > _SNIPPET_CHARS:
        text = text[:_SNIPPET_CHARS] + "…"
    return repr(text) if text else "(empty body)"
