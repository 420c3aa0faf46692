"""``sockway serve --serverless serverless.yml`` on a Serverless Framework chat with Python
handlers (issue 14): websocket events with an authorizer and a two-way route, provider and
function environment, ``${self:}``/``${env:}``/``${sls:stage}`` variables, the table under
``resources:``.

A real ``sockway`` process, websockets clients, boto3 reading the table.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.projects_support import copy_project, serve_project
from tests.e2e.test_project_sam import _table, _until_count


@pytest.mark.timeout(180)
async def test_serverless_chat_runs_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project("sls_chat", tmp_path)
    monkeypatch.setitem(os.environ, "SLS_CHAT_PREFIX", "bot says")  # ${env:SLS_CHAT_PREFIX}
    async with serve_project(
        project, "--serverless", "serverless.yml", "--stage", "prod"
    ) as served:
        assert "provider.iam: not emulated" in served.banner
        table = _table(served.dynamodb_endpoint, "sls-chat-prod-connections")
        url = f"ws://127.0.0.1:{served.port}/prod"
        with pytest.raises(InvalidStatus) as denied:
            await websockets.connect(f"{url}?token=nope")
        assert denied.value.response.status_code == 403
        async with (
            websockets.connect(f"{url}?token=letmein") as ana,
            websockets.connect(f"{url}?token=letmein") as ben,
        ):
            await _until_count(table, 2)
            # Two-way route chosen by $request.body.type; handler path src/chat.say.
            await ana.send(json.dumps({"type": "say", "text": "héllo"}))
            reply = json.loads(await asyncio.wait_for(ana.recv(), 30))
            assert reply["reply"] == "bot says: HELLO!"  # text-unidecode from requirements.txt
            assert reply["greeting"] == "hello from prod"  # ${self:custom.greeting.${sls:stage}}
            assert reply["table"] == "sls-chat-prod-connections"
            assert 0 < reply["remaining_ms"] <= 5000  # the function's own timeout
            # $default: the handler posts to https://{domainName}/{stage} itself.
            await ana.send(json.dumps({"type": "chat", "text": "to ben"}))
            got = json.loads(await asyncio.wait_for(ben.recv(), 30))
            assert got == {"type": "chat", "text": "to ben"}
        await _until_count(table, 0)
    assert any("installing " in line for line in served.log)  # progress, on stderr
    # A second start finds the dependencies installed for the same requirements.txt.
    async with serve_project(project, "--serverless", "serverless.yml") as again:
        assert "requirements.txt: cached in" in again.banner
        async with websockets.connect(f"ws://127.0.0.1:{again.port}/dev?token=letmein") as ws:
            await ws.send(json.dumps({"type": "say", "text": "ça va"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert reply["reply"] == "bot says: CA VA!"
            assert reply["greeting"] == "hello from dev"  # ${opt:stage, 'dev'}


@pytest.mark.timeout(180)
async def test_a_project_on_several_workers_over_redis(tmp_path: Path) -> None:
    from tests.redis_support import redis_url as shared_redis_url

    project = copy_project("sls_chat", tmp_path)
    args = ("--serverless", "serverless.yml", "--workers", "2", "--broker", shared_redis_url())
    async with serve_project(project, *args) as served:
        assert "listening: 2 workers" in served.banner
        assert served.banner.count("DynamoDB: ") == 1  # one table store for every worker
        table = _table(served.dynamodb_endpoint, "sls-chat-dev-connections")
        url = f"ws://127.0.0.1:{served.port}/dev?token=letmein"
        clients = [await websockets.connect(url) for _ in range(4)]
        try:
            await _until_count(table, 4)
            await clients[0].send(json.dumps({"type": "chat", "text": "everyone"}))
            for ws in clients[1:]:  # whichever worker holds it, @connections reaches it
                got = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert got == {"type": "chat", "text": "everyone"}
        finally:
            for ws in clients:
                await ws.close()
        await _until_count(table, 0)
