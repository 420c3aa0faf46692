"""``sockway serve --template`` on a SAM WebSocket chat written the way SAM projects are
(issue 14): raw ``AWS::ApiGatewayV2`` resources, ``AWS::Serverless::Function`` handlers with
boto3, a DynamoDB connections table, an authorizer on ``$connect``, an inline ``ZipFile``
function, Globals, Parameters, Mappings and Conditions.

A real ``sockway`` process, the embedded DynamoDB it starts, wscat and websockets clients,
boto3 reading the table.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.projects_support import SOCKWAY, Wscat, copy_project, serve_project


def _table(endpoint: str, name: str = "chat_connections") -> Any:
    return boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).Table(name)


async def _items(table: Any) -> list[dict[str, Any]]:
    page = await asyncio.to_thread(table.scan)
    return list(page["Items"])


async def _until_count(table: Any, count: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        items = await _items(table)
        if len(items) == count:
            return items
        assert loop.time() < deadline, f"table has {items}, expected {count} items"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
async def test_sam_chat_runs_unchanged(tmp_path: Path) -> None:
    project = copy_project("sam_chat", tmp_path)
    async with serve_project(
        project, "--template", "template.yaml", "--parameter", "Env=prod"
    ) as served:
        assert "PingRole (AWS::IAM::Role)" in served.banner  # listed once as not emulated
        assert "OnConnectPermission (AWS::Lambda::Permission)" in served.banner
        assert f"WebSocketURI: wss://127.0.0.1:{served.port}/Prod" in served.banner
        table = _table(served.dynamodb_endpoint)
        assert await _items(table) == []
        url = f"ws://127.0.0.1:{served.port}/Prod"

        # The authorizer denies a bad token (403) and a missing one (401: identity source).
        with pytest.raises(InvalidStatus) as denied:
            await websockets.connect(f"{url}?token=mallory-token")
        assert denied.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as missing:
            await websockets.connect(url)
        assert missing.value.response.status_code == 401

        alice = await Wscat.connect(tmp_path, f"{url}?token=alice-token")
        async with websockets.connect(f"{url}?token=bob-token") as bob:
            items = await _until_count(table, 2)
            assert sorted(i["user"] for i in items) == ["alice", "bob"]

            # sendmessage posts through the callback URL the template builds with !Sub.
            await alice.send(json.dumps({"action": "sendmessage", "data": "hi all"}))
            got = json.loads(await asyncio.wait_for(bob.recv(), 30))
            assert got["data"] == "hi all"
            assert got["greeting"] == "hello from prod"  # FindInMap with --parameter Env=prod
            assert got["mode"] == "strict"  # Fn::If on the IsProd condition
            await alice.wait_for('"data": "hi all"')

            # The inline ZipFile function, two-way through its RouteResponse.
            await bob.send(json.dumps({"action": "ping"}))
            pong = json.loads(await asyncio.wait_for(bob.recv(), 30))
            assert pong["pong"] is True
            assert pong["table"] is None  # SAM Globals apply to AWS::Serverless::Function only
            assert pong["function"].startswith("sockway-local-PingFunction-")  # its own name
            # A handler building https://{apiId}.execute-api.{region}.amazonaws.com/{stage}
            # from the event reaches sockway (its workers resolve the name; the development
            # certificate carries it).
            await bob.send(json.dumps({"action": "echo"}))
            echoed = json.loads(await asyncio.wait_for(bob.recv(), 30))
            api_id = echoed["apiId"]
            assert echoed["via"] == f"https://{api_id}.execute-api.us-east-1.amazonaws.com/Prod"
        # bob left: $disconnect removed his item.
        (left,) = await _until_count(table, 1)
        assert left["user"] == "alice"
        await alice.close()
        await _until_count(table, 0)


@pytest.mark.timeout(240)
async def test_sam_nodejs_functions_run_in_node_workers(tmp_path: Path) -> None:
    # Runtime nodejs20.x (from Globals) runs in runtime: nodejs; Handler keeps its directory
    # (handlers/echo.handler is the file handlers/echo.mjs); each function has its own
    # environment; a $connect refusal is the HTTP answer.
    project = copy_project("sam_node", tmp_path)
    async with serve_project(project, "--template", "template.yaml") as served:
        url = f"ws://127.0.0.1:{served.port}/prod"
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(f"{url}?refuse=1")
        assert refused.value.response.status_code == 403
        async with websockets.connect(url) as client:
            await client.send(json.dumps({"action": "echo", "data": "node"}))
            answer = json.loads(await asyncio.wait_for(client.recv(), 60))
        assert answer == {"reply": "hi there, node", "route": "echo", "runtime": "node"}


def _check(project: Path, *args: str) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(
        [*SOCKWAY, "check-config", "--template", "template.yaml", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def test_check_config_names_every_unsupported_resource_and_property(tmp_path: Path) -> None:
    project = copy_project("sam_chat", tmp_path)
    code, out = _check(project)
    assert code == 0, out
    assert "OK (1 API(s))" in out
    template = project / "template.yaml"
    text = template.read_text()
    text = text.replace("Runtime: python3.12\n    Timeout: 10", "Runtime: java21\n    Timeout: 10")
    text = text.replace(
        "      AuthorizationType: NONE\n      Target: !Sub",
        "      AuthorizationType: AWS_IAM\n      Target: !Sub",
    )
    text = text.replace(
        "      IntegrationType: AWS_PROXY\n      IntegrationUri: !GetAtt PingFunction.Arn",
        "      IntegrationType: MOCK\n      RequestTemplates: {}\n      IntegrationUri: !GetAtt PingFunction.Arn",
    )
    text = text.replace(
        "Outputs:",
        """  Mapping:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref ChatApi
      RouteId: !Ref SendRoute
      RouteResponseKey: $default
      ResponseModels: {}
  Other:
    Type: AWS::AppSync::GraphQLApi
    Properties: {Name: x}
Outputs:""",
    )
    template.write_text(text)
    code, out = _check(project, "--parameter", "Missing=1")
    assert code == 1, out
    for line in [
        "OnConnectFunction.Properties.Runtime: function OnConnectFunction uses java21",
        "DisconnectRoute.Properties.AuthorizationType: only the $connect route can be authorized",
        "PingInteg.Properties.IntegrationType: 'MOCK': only AWS_PROXY",
        "PingInteg.Properties.RequestTemplates: not supported by sockway",
        "Mapping.Properties.ResponseModels: not supported by sockway",
        "Other.Type: AWS::AppSync::GraphQLApi is not supported by sockway",
        "--parameter Missing: the template declares no such parameter",
    ]:
        assert line in out, out
    # A refused function is said once, not again by every route that uses it.
    assert "ConnectInteg.Properties.IntegrationUri" not in out


@pytest.mark.timeout(120)
async def test_tables_go_to_the_dynamodb_endpoint_given(tmp_path: Path) -> None:
    from sockway.projects.dynamodb import LocalDynamoDB

    own = LocalDynamoDB()  # "DynamoDB Local" of the user: a moto server started here
    endpoint = await asyncio.to_thread(own.start)
    try:
        project = copy_project("sam_chat", tmp_path)
        async with serve_project(
            project, "--template", "template.yaml", "--dynamodb-endpoint", endpoint
        ) as served:
            assert f"DynamoDB: {endpoint} (given)" in served.banner
            table = _table(endpoint)
            url = f"ws://127.0.0.1:{served.port}/Prod?token=alice-token"
            async with websockets.connect(url):
                (item,) = await _until_count(table, 1)
                assert item["user"] == "alice"
        # A second start keeps the existing table (and what it holds).
        await asyncio.to_thread(table.put_item, Item={"connectionId": "kept"})
        async with serve_project(
            project, "--template", "template.yaml", "--dynamodb-endpoint", endpoint
        ) as served:
            assert "table chat_connections (ConnectionsTable): kept, it exists" in served.banner
            assert [i["connectionId"] for i in await _items(table)] == ["kept"]
    finally:
        own.stop()
