"""AppSync Events code handlers (APPSYNC_JS) and Node.js Lambda handlers on an events API,
driven by the real AWS Amplify JS ``events`` client (issue 15).

The ``chat`` namespace's ``code`` file transforms and drops events in ``onPublish`` and refuses
subscriptions in ``onSubscribe`` (``util.unauthorized`` / ``util.error``); the ``direct``
namespace's onPublish and the AWS_LAMBDA authorizer are Node.js Lambda functions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartGateway
from tests.e2e.appsync_support import EventsClient

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "amplify_code_handlers.mjs"

CODE = """
import { util } from '@aws-appsync/utils';

export function onPublish(ctx) {
  util.log.info('publishing', ctx.events.length, 'event(s) to', ctx.info.channel.path);
  if (ctx.events.some(({ payload }) => payload.forbid)) {
    util.error('no forbidden words here');
  }
  return ctx.events
    .filter(({ payload }) => !payload.drop)
    .map(({ id, payload }) => ({
      id,
      payload: {
        ...payload,
        shout: util.str.toUpper(payload.text),
        channel: ctx.info.channel.path,
        namespace: ctx.info.channelNamespace.name,
        user: ctx.identity?.handlerContext?.user ?? null,
        headers: typeof ctx.request.headers === 'object',
      },
    }));
}

export function onSubscribe(ctx) {
  console.log('subscribe to', ctx.info.channel.path);
  if (ctx.info.channel.segments[1] === 'private') util.unauthorized();
  if (ctx.info.channel.path.startsWith('/chat/banned')) util.error('banned channel');
}
"""

DIRECT = """
exports.handler = async (event) => ({
  events: event.events.map(({ id, payload }) => ({ id, payload: { ...payload, lambda: 'node' } })),
});
"""

AUTHORIZER = """
export const handler = async (event) => ({
  isAuthorized: event.authorizationToken === 'let-me-in',
  handlerContext: { user: 'ann' },
});
"""


def events_config(code: Path) -> dict[str, Any]:
    return {
        "name": "ev",
        "type": "events",
        "code_dir": str(code),
        "runtime": "nodejs",
        "auth_providers": [{"type": "AWS_LAMBDA", "handler": "authz.handler"}],
        "namespaces": {
            "chat": {"code": "handlers.js"},
            "direct": {"on_publish": "direct.handler"},
        },
    }


async def test_code_handlers_and_node_lambdas_with_amplify(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code = tmp_path / "code"
    code.mkdir()
    (code / "handlers.js").write_text(CODE)  # .js without "type": "module": ESM all the same
    (code / "direct.js").write_text(DIRECT)
    (code / "authz.mjs").write_text(AUTHORIZER)
    gw = await start_gateway(
        {"tls": {"certificate": "auto"}, "apis": [events_config(code)], "nodejs": {"aws_sdk": []}}
    )
    assert gw.tls is not None and gw.tls.ca_file is not None
    token = {"Authorization": "let-me-in"}
    raw = await EventsClient.connect(gw.port, auth={"host": f"127.0.0.1:{gw.port}", **token})
    assert (await raw.subscribe("raw", "/chat/*", token))["type"] == "subscribe_success"
    node = shutil.which("node")
    assert node is not None
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        json.dumps({"endpoint": f"https://localhost:{gw.port}/event", "authToken": "let-me-in"}),
        cwd=ROOT,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(gw.tls.ca_file)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode() + out.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])

    def transformed(text: str) -> dict[str, Any]:
        return {
            "text": text,
            "shout": text.upper(),
            "channel": "/chat/room",
            "namespace": "chat",
            "user": "ann",
            "headers": True,
        }

    assert result["received"] == [
        transformed("hello"),
        transformed("kept"),
        transformed("also"),
        {"n": 1, "lambda": "node"},
    ]
    assert result["publishHttp"] is None  # the dropped event is not a failure
    assert result["publishError"] == "Publish errors: HandlerExecutionError"
    assert result["postError"] is not None  # refused over HTTP too; the status and message:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.port}/event",
            json={"channel": "/chat/room", "events": ['{"text": "x", "forbid": true}']},
            headers={"Authorization": "let-me-in"},
        ) as response,
    ):
        assert response.status == 403
        assert "no forbidden words here" in await response.text()
    assert "Unauthorized" in result["unauthorized"]
    assert "banned channel" in result["banned"]
    # Another subscriber of the namespace got the same transformed events, nothing dropped.
    got = [json.loads((await raw.recv())["event"]) for _ in range(3)]
    assert got == [transformed("hello"), transformed("kept"), transformed("also")]
    await raw.close()
    assert "publishing 3 event(s) to /chat/room" in caplog.text  # util.log, Lambda's format
    assert "[ev-chat-onPublish]" in caplog.text and "[ev-chat-onSubscribe]" in caplog.text


GUARD = """
class UnauthorizedException extends Error {
  constructor(message) { super(message); this.name = 'UnauthorizedException'; }
}

exports.handler = async (event, context) => {
  const { path, segments } = event.info.channel;
  console.log('onSubscribe', event.info.operation, path, context.functionName);
  if (event.info.operation !== 'SUBSCRIBE' || event.events !== null) {
    return { error: `unexpected event: ${event.info.operation}` };
  }
  if (segments[1] === 'closed') return { error: `no subscriptions to ${path}` };
  if (segments[1] === 'vip') throw new UnauthorizedException('vip only');
  if (segments[1] === 'odd') return { allowed: 'not an answer AWS knows' };
  if (segments[1] === 'bug') return undefined.nope;
  if (segments[1] === 'whoami') {
    return { error: JSON.stringify({ ns: event.info.channelNamespace.name, identity: event.identity,
                                     key: event.request.headers['x-api-key'] ?? null }) };
  }
  return null;
};
"""


async def test_node_lambda_on_subscribe_refuses_and_allows(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    """A Node.js Lambda function (``runtime: nodejs``, issue 15 "Every handler slot") as a
    namespace's ``on_subscribe``, driven over the ``aws-appsync-event-ws`` protocol: ``null``
    allows, ``{error}`` is ``SubscriptionProcessingError`` with its message, a thrown
    ``UnauthorizedException`` refuses as one, any other answer or a crash is
    ``HandlerExecutionError`` (README "Handlers", appsync-events spec §6.3)."""
    from tests.e2e.appsync_support import API_KEY, events_api

    code = tmp_path / "code"
    code.mkdir()
    (code / "guard.js").write_text(GUARD)
    config = events_api(
        code, runtime="nodejs", namespaces={"guarded": {"on_subscribe": "guard.handler"}}
    )
    gw = await start_gateway({"apis": [config], "nodejs": {"aws_sdk": []}})
    client = await EventsClient.connect(gw.port)

    async def refused(sub_id: str, channel: str) -> tuple[str, str]:
        reply = await client.subscribe(sub_id, channel)
        assert reply["type"] == "subscribe_error" and reply["id"] == sub_id, reply
        (error,) = reply["errors"]
        return error["errorType"], error.get("message", "")

    assert await refused("c", "/guarded/closed/x") == (
        "SubscriptionProcessingError",
        "no subscriptions to /guarded/closed/x",
    )
    assert (await refused("v", "/guarded/vip"))[0] == "UnauthorizedException"
    assert await refused("o", "/guarded/odd") == (
        "HandlerExecutionError",
        "Unable to process request",
    )
    assert (await refused("b", "/guarded/bug"))[0] == "HandlerExecutionError"
    error_type, message = await refused("w", "/guarded/whoami")
    assert error_type == "SubscriptionProcessingError"
    seen = json.loads(message)
    assert seen["ns"] == "guarded" and seen["key"] == API_KEY
    for sub_id, channel in (("room", "/guarded/room"), ("all", "/guarded/*")):
        reply = await client.subscribe(sub_id, channel)
        assert reply == {"type": "subscribe_success", "id": sub_id}, reply
    # The allowed subscriptions are live: a publish reaches both, the refused ones nothing.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gw.port}/event",
            json={"channel": "/guarded/room", "events": ['{"n": 1}']},
            headers={"x-api-key": API_KEY},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    got = [await client.recv(), await client.recv()]
    assert sorted(f["id"] for f in got) == ["all", "room"]
    assert all(f["type"] == "data" and json.loads(f["event"]) == {"n": 1} for f in got)
    await client.close()
