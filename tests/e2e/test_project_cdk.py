"""``sockway serve --template cdk.out`` on a CDK app (issue 14): the committed ``cdk.out`` of
``tests/e2e/projects/cdk_app/app.js`` (L2 constructs: WebSocketApi with a Lambda authorizer,
a DynamoDB table, an AppSync EventApi with an API key and a DIRECT Powertools publish handler).

A real ``sockway`` process; websockets clients on the WebSocket API, the AWS Amplify client
and a raw realtime client on the Events API, boto3 reading the table.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.appsync_support import EventsClient
from tests.e2e.projects_support import copy_project, serve_project
from tests.e2e.test_appsync_amplify import run_amplify
from tests.e2e.test_project_sam import _items, _table, _until_count

KEY = "da2-cdkfixturekey0000000000000"


@pytest.mark.timeout(180)
async def test_cdk_app_runs_from_cdk_out(tmp_path: Path) -> None:
    project = copy_project("cdk_app", tmp_path)
    async with serve_project(
        project / "cdk.out", "--template", ".", "--api-key", f"EventsApiDefaultApiKeyD7F73D22={KEY}"
    ) as served:
        assert f"AppSync API key EventsApiDefaultApiKeyD7F73D22: {KEY} (pinned)" in served.banner
        assert f"EventsHttp: 127.0.0.1:{served.port}" in served.banner
        table_name = served.find(r"table (\S+) \(Connections")
        table = _table(served.dynamodb_endpoint, table_name)
        url = f"ws://127.0.0.1:{served.port}/prod"

        with pytest.raises(InvalidStatus) as denied:
            await websockets.connect(url, additional_headers={"X-Secret": "wrong"})
        assert denied.value.response.status_code == 403
        async with websockets.connect(url, additional_headers={"X-Secret": "open-sesame"}):
            (item,) = await _until_count(table, 1)
            assert int(item["expiresAt"]) > 0
        await _until_count(table, 0)

        # The Events API: Amplify publishes over WebSocket and HTTP with the template's key;
        # the DIRECT Powertools handler rewrites /chat/* events, /plain/* pass unchanged.
        raw = await EventsClient.connect(
            served.port, {"host": f"127.0.0.1:{served.port}", "x-api-key": KEY}
        )
        ack = await raw.subscribe("s1", "/chat/*", {"x-api-key": KEY})
        assert ack["type"] == "subscribe_success", ack
        options = {
            "endpoint": f"https://127.0.0.1:{served.port}/event",
            "channel": "/chat/room",
            "authMode": "apiKey",
            "apiKey": KEY,
        }
        result = await run_amplify(options, Path(served.ca_file))
        shouted = [
            {"via": "websocket", "n": 1, "text": "<B> & É", "checked": True},
            {"via": "http", "n": 2, "text": "", "checked": True},
        ]
        assert result["received"] == shouted
        assert [json.loads((await raw.recv())["event"]) for _ in range(2)] == shouted
        wrong = await raw.subscribe("s2", "/plain/*", {"x-api-key": "da2-wrong"})
        assert wrong["type"] == "subscribe_error", wrong
        await raw.close()
        assert await _items(table) == []


@pytest.mark.timeout(180)
async def test_one_function_calls_another_through_the_lambda_invoke_api(tmp_path: Path) -> None:
    project = copy_project("cdk_app", tmp_path)
    async with serve_project(project / "cdk.out", "--template", ".") as served:
        url = f"ws://127.0.0.1:{served.port}/prod"
        headers = {"X-Secret": "open-sesame"}
        async with (
            websockets.connect(url, additional_headers=headers) as one,
            websockets.connect(url, additional_headers=headers) as two,
        ):
            table = _table(served.dynamodb_endpoint, served.find(r"table (\S+) \(Connections"))
            await _until_count(table, 2)
            # notify invokes the audit function (boto3 lambda.invoke, RequestResponse) and
            # posts its answer to every connection through the stage's callbackUrl.
            await one.send(json.dumps({"action": "notify", "text": "deploy done"}))
            notices = [json.loads(await asyncio.wait_for(ws.recv(), 30)) for ws in (one, two)]
            reply = json.loads(await asyncio.wait_for(one.recv(), 30))
        assert notices == [{"notice": "audited: deploy done"}] * 2
        assert reply == {"sent": "audited: deploy done"}
