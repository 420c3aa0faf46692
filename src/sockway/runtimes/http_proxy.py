"""API Gateway ``HTTP_PROXY`` integrations: the client's request passed through as-is to a URL
(README "HTTP_PROXY integrations").

What AWS documents, and what sockway does with it:

- "HTTP_PROXY: for integrating the route or method request with an HTTP endpoint, with the
  client request passed through as-is" (apigatewayv2 service model, ``IntegrationType``): a
  message route sends the client's message, unchanged, as the body of ``IntegrationMethod``
  (default ``POST``) to ``IntegrationUri``. sockway labels it ``Content-Type: application/json``
  (WebSocket messages carry no content type; a mapping may set another).
- On ``$connect`` the client request is its upgrade GET: sockway forwards the handshake's
  headers (with the ``X-Forwarded-*`` / ``X-Amzn-Trace-Id`` API Gateway adds, apigw spec §1.3),
  less the hop-by-hop and WebSocket key headers, and no body. The query string is not forwarded:
  map it (``integration.request.querystring.x: route.request.querystring.x``). ``$disconnect``
  sends no body and only mapped headers. [inferred: the docs say only "as-is"]
- ``RequestParameters`` add headers and query parameters (``runtimes.request_parameters``,
  AWS "Set up data mapping for WebSocket APIs").
- "For proxy integrations, API Gateway automatically passes the backend output to the caller as
  the complete payload. There is no integration response" (AWS "Setting up a WebSocket API
  integration response"); the integration response selection expression "isn't utilized"
  for HTTP_PROXY (AWS "selection expressions"). The answer becomes a Lambda proxy result
  ``{"statusCode", "headers", "multiValueHeaders", "body"}``, so the route pipeline does the
  rest unchanged: on ``$connect`` a non-2xx status refuses the upgrade with that status and a
  ``Sec-WebSocket-Protocol`` header selects the subprotocol (§3.2, §3.3); a two-way route sends
  the body, whatever the status (§3.1); an empty body sends nothing.
- An unreachable endpoint is ``EndpointUnreachable``, a body that is not UTF-8 text on a message
  route ``InvalidResponse``, a body over ``http.max_response_bytes`` ``ResponseTooLarge``: all
  ``InvocationError`` (the client gets "Internal server error", ``$connect`` 502); no answer
  within the route's timeout is ``InvocationTimeout`` ("Endpoint request timed out", 504).
  Redirects are not followed. Nothing sockway-specific (signature, ``Lambda-Runtime-*``,
  ``http.headers``) is sent: the endpoint is an unchanged HTTP service.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from multidict import CIMultiDict

from sockway.runtimes.base import Invocation, InvocationError, InvocationTimeout
from sockway.runtimes.http import HttpTransport, read_body
from sockway.runtimes.refs import safe_url
from sockway.runtimes.request_parameters import evaluate, parse_mapping
from sockway.runtimes.settings import HttpProxySettings

# Not forwarded from the upgrade request: hop-by-hop headers (RFC 9110 §7.6.1), the WebSocket
# key exchange (RFC 6455 §4.1) and Host (the endpoint's own is sent).
_NOT_FORWARDED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)


class HttpProxyIntegration:
    """One route served by an HTTP endpoint as API Gateway's ``HTTP_PROXY`` (module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        function_name: str,
        settings: HttpProxySettings,
        transport: HttpTransport,
        max_response_bytes: int,
    ) -> None:
        self._url = url
        self._where = safe_url(url)
        self._function_name = function_name
        self._method = settings.method
        self._mappings = parse_mapping(settings.request_parameters)
        self._transport = transport
        self._max_bytes = max_response_bytes

    @property
    def function_name(self) -> str:
        return self._function_name

    def request(
        self, event: dict[str, Any]
    ) -> tuple[CIMultiDict[str], list[tuple[str, str]], bytes]:
        """(headers, query parameters, body) of the backend request for one proxy ``event``."""
        context = event.get("requestContext") or {}
        event_type = context.get("eventType")
        headers: CIMultiDict[str] = CIMultiDict()
        body = b""
        if event_type == "CONNECT":
            multi = event.get("multiValueHeaders") or {}
            for name, values in multi.items():
                if str(name).lower() not in _NOT_FORWARDED:
                    for value in values:
                        headers.add(str(name), str(value))
        elif event_type == "MESSAGE":
            body = str(event.get("body") or "").encode()
            headers["Content-Type"] = "application/json"
        mapped, query = evaluate(self._mappings, event)
        for name, value in mapped.items():
            headers[name] = value  # a mapping replaces a forwarded header of that name
        return headers, query, body

    async def invoke(self, event: dict[str, Any], invocation: Invocation) -> Any:
        headers, query, body = self.request(event)
        message = (event.get("requestContext") or {}).get("eventType") == "MESSAGE"
        try:
            async with (
                asyncio.timeout(invocation.timeout_s),
                self._transport.slots(self._url),
                self._transport.session().request(
                    self._method,
                    self._url,
                    params=query or None,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                ) as response,
            ):
                payload = await read_body(response, self._max_bytes, self._where)
                status = response.status
                answer = response.headers
        except TimeoutError as exc:
            raise InvocationTimeout(
                f"{self._method} {self._where} did not answer within {invocation.timeout_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise InvocationError(
                "EndpointUnreachable",
                f"{self._method} {self._where} failed: {type(exc).__name__}: {exc}",
            ) from exc
        try:
            text = payload.decode("utf-8") if message else payload.decode("utf-8", "replace")
        except UnicodeDecodeError:
            raise InvocationError(
                "InvalidResponse",
                f"{self._where} answered HTTP {status} with a body that is not UTF-8 text "
                "(a WebSocket text frame must be)",
            ) from None
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in answer.items():
            single[name] = value
            multi.setdefault(name, []).append(value)
        return {
            "statusCode": status,
            "headers": single,
            "multiValueHeaders": multi,
            "body": text or None,
        }
