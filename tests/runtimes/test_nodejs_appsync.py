"""APPSYNC_JS code handlers in Node.js workers, without a gateway (runtimes/node/appsync.mjs).

The answer each operation gives is the direct-Lambda shape the events door reads
(``{"events": [...]}`` / ``{"error": msg}`` / ``None``); what APPSYNC_JS forbids is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from sockway.runtimes.base import Invocation, InvocationError
from sockway.runtimes.factory import FunctionSpec
from sockway.runtimes.node_sdk import NodejsSettings
from sockway.runtimes.nodejs import NodeIntegration, NodeRuntime
from sockway.runtimes.process import WorkerPools

pytestmark = pytest.mark.timeout(60)

FILES = {
    "ok.js": """
import { util, runtime } from '@aws-appsync/utils';
export function onPublish(ctx) {
  if (ctx.events[0].payload.mode === 'null') return null;
  if (ctx.events[0].payload.mode === 'error') util.error('refused: ' + ctx.info.channel.path);
  if (ctx.events[0].payload.mode === 'deny') util.unauthorized();
  if (ctx.events[0].payload.mode === 'bug') throw new TypeError('oops');
  if (ctx.events[0].payload.mode === 'fetch') return [{ id: ctx.events[0].id, payload: typeof fetch }];
  return ctx.events.map(({ id, payload }) => ({ id, payload: { ...payload, id: util.autoId().length,
    ulid: util.autoUlid().length, b64: util.base64Encode('hi'), auth: util.authType() } }));
}
export function onSubscribe(ctx) {
  if (ctx.info.channel.segments.includes('deny')) util.unauthorized();
  if (ctx.info.channel.segments.includes('error')) util.error('no ' + ctx.info.channel.path);
  return 'ignored';
}
""",
    "only_subscribe.mjs": "export function onSubscribe() {}",
    "async.js": "export async function onPublish(ctx) { return ctx.events; }",
    "network.js": "import net from 'node:net';\nexport function onPublish(ctx) { return ctx.events; }",
    "source.js": "export const onPublish = { request(ctx) { return {}; }, response(ctx) { return ctx.events; } };",
}

Build = Callable[[str, str], NodeIntegration]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    code = tmp_path / "code"
    code.mkdir()
    for name, source in FILES.items():
        (code / name).write_text(source)
    pools = WorkerPools(reload=False)
    runtime = NodeRuntime(NodejsSettings(aws_sdk=[]), tmp_path / "state")

    def make(file: str, operation: str) -> NodeIntegration:
        spec = FunctionSpec(ref=file, function_name=f"{file}-{operation}", code_dir=code)
        integration = NodeIntegration(spec, pools, runtime, f"appsync:{operation}")
        pools.add(spec, integration)
        return integration

    yield make
    await pools.aclose()


def event(operation: str, path: str, payloads: list[Any] | None = None) -> dict[str, Any]:
    segments = path.strip("/").split("/")
    return {
        "identity": None,
        "request": {"headers": {"host": "x"}, "domainName": None},
        "info": {
            "channel": {"path": path, "segments": segments},
            "channelNamespace": {"name": segments[0]},
            "operation": operation,
        },
        "events": None
        if payloads is None
        else [{"id": str(i), "payload": p} for i, p in enumerate(payloads)],
        "stash": {},
    }


async def publish(fn: NodeIntegration, *payloads: Any) -> Any:
    return await fn.invoke(event("PUBLISH", "/ns/a", list(payloads)), Invocation("r", 10))


async def test_on_publish_answers(build: Build) -> None:
    fn = build("ok.js", "onPublish")
    assert await publish(fn, {"a": 1}) == {
        "events": [
            {
                "id": "0",
                "payload": {
                    "a": 1,
                    "id": 36,
                    "ulid": 26,
                    "b64": "aGk=",
                    "auth": "API Key Authorization",
                },
            }
        ]
    }
    assert await publish(fn, {"mode": "null"}) == {"events": []}  # null broadcasts nothing
    assert await publish(fn, {"mode": "error"}) == {"error": "refused: /ns/a"}
    assert await publish(fn, {"mode": "fetch"}) == {"events": [{"id": "0", "payload": "undefined"}]}
    with pytest.raises(InvocationError) as err:
        await publish(fn, {"mode": "deny"})
    assert err.value.error_type == "UnauthorizedException"
    with pytest.raises(InvocationError) as err:
        await publish(fn, {"mode": "bug"})
    assert (err.value.error_type, err.value.error_message) == ("TypeError", "oops")


async def test_on_subscribe_answers(build: Build) -> None:
    fn = build("ok.js", "onSubscribe")

    async def subscribe(path: str) -> Any:
        return await fn.invoke(event("SUBSCRIBE", path), Invocation("r", 10))

    assert await subscribe("/ns/ok") is None  # the return value does not matter
    assert await subscribe("/ns/error") == {"error": "no /ns/error"}
    with pytest.raises(InvocationError) as err:
        await subscribe("/ns/deny")
    assert err.value.error_type == "UnauthorizedException"


async def test_a_missing_export_passes_events_unchanged(build: Build) -> None:
    fn = build("only_subscribe.mjs", "onPublish")
    assert await publish(fn, {"a": 1}) == {"events": [{"id": "0", "payload": {"a": 1}}]}


async def test_what_appsync_js_forbids_is_refused(build: Build) -> None:
    with pytest.raises(InvocationError) as err:
        await publish(build("async.js", "onPublish"), {"a": 1})
    assert err.value.error_type == "TypeError"
    assert "APPSYNC_JS handlers are synchronous" in err.value.error_message
    with pytest.raises(InvocationError) as err:
        await publish(build("network.js", "onPublish"), {"a": 1})
    assert "may import only '@aws-appsync/utils'" in err.value.error_message
    assert "node:net" in err.value.error_message
    with pytest.raises(InvocationError) as err:
        await publish(build("source.js", "onPublish"), {"a": 1})
    assert err.value.error_type == "Runtime.HandlerNotFound"
    assert "data source" in err.value.error_message
