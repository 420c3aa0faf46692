"""Handlers of the benchmark API (bench/sockway-bench.yaml): what a user would write.

- ``connect`` ($connect): with ``?channel=NAME`` the connection joins that channel through the
  management API (``PUT /{stage}/@connections/{id}/channels/{name}``, keep-alive aiohttp client
  reused across invocations, as a Lambda reuses its globals); without it, it just accepts;
- ``echo`` (two-way, async): the message body comes back unchanged;
- ``echo_sync`` (two-way, plain ``def``): the same, run on the handler thread pool — and, on the
  route ``echo_process``, in worker processes (``runtime: process``; this module imports
  nothing heavy at the top, so a worker's cold start is the interpreter's and sockway's);
- ``whoami`` (two-way): answers ``id:<connectionId>`` so a load generator learns its id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import aiohttp

_session: aiohttp.ClientSession | None = None


async def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _session
    channel = (event.get("queryStringParameters") or {}).get("channel")
    if channel:
        ctx = event["requestContext"]
        if _session is None:
            import aiohttp

            _session = aiohttp.ClientSession()
        url = (
            f"http://{ctx['domainName']}/{ctx['stage']}/@connections/"
            f"{quote(ctx['connectionId'], safe='')}/channels/{channel}"
        )
        async with _session.put(url) as answer:
            if answer.status != 204:
                return {"statusCode": 500}
    return {"statusCode": 200}


async def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


def echo_sync(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


async def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": "id:" + event["requestContext"]["connectionId"]}
