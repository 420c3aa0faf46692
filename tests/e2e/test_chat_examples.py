"""The chat examples in ``examples/``, run from their own ``sockway.yaml`` with real clients.

``examples/chat`` is the AWS tutorial chat (DynamoDB + ``@connections`` through boto3), run
against moto's DynamoDB server in this process; ``examples/chat-channels`` is the same chat on
sockway's channel extension. Each test starts the example's configuration on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import websockets
import yaml
from moto.server import ThreadedMotoServer
from websockets.asyncio.client import ClientConnection

from sockway.gateway.config import load_config
from tests.conftest import StartGateway

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat"
CHANNELS = ROOT / "examples" / "chat-channels"
TABLE = "chat-connections"
# Handler modules of both examples. The repository's conftest only forgets modules loaded from
# temporary directories, and two examples may not share a module name in one interpreter.
EXAMPLE_MODULES = ("connect", "disconnect", "send_message", "join", "say")
TIMEOUT_S = 5.0


def _forget_example_modules() -> None:
    for name in EXAMPLE_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def _fresh_example_modules() -> Iterator[None]:
    _forget_example_modules()
    yield
    _forget_example_modules()


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's DynamoDB server on a free port, the example's table, and the environment the
    handlers' import-time boto3 resources read (set before any handler module is imported)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # A fresh default session, so boto3 reads this environment rather than a cached one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    try:
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "connectionId", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "connectionId", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield boto3.resource("dynamodb").Table(TABLE)
    finally:
        # moto's backends are process-wide: drop the table so the next test starts empty.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()


def example_config(directory: Path, tmp_path: Path) -> dict[str, Any]:
    """The example's ``sockway.yaml`` as shipped, moved to an ephemeral port and a temp state."""
    raw = yaml.safe_load((directory / "sockway.yaml").read_text())
    assert isinstance(raw, dict)
    raw["listen"] = "127.0.0.1:0"
    raw["state_dir"] = str(tmp_path / "state")
    return raw


async def table_ids(table: Any) -> set[str]:
    page = await asyncio.to_thread(table.scan, ConsistentRead=True)
    return {item["connectionId"] for item in page["Items"]}


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it is true; fail after ``TIMEOUT_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {TIMEOUT_S} s: {what}")
        await asyncio.sleep(0.02)


async def table_eventually(table: Any, expected: set[str], what: str) -> None:
    async def check() -> bool:
        return await table_ids(table) == expected

    await eventually(check, what)


async def receive(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT_S)


async def assert_silent(ws: ClientConnection) -> None:
    """Nothing else arrives (checked after the expected messages, so a short wait suffices)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.2)


def send(message: str) -> str:
    return json.dumps({"action": "sendmessage", "message": message})


# -- the shipped configurations -----------------------------------------------------------


def test_chat_config_is_the_tutorial_setup(dynamodb: Any) -> None:
    settings = load_config(CHAT / "sockway.yaml")
    assert settings.listen == "127.0.0.1:8080"
    assert settings.tls is not None and settings.tls.certificate == "auto"
    assert settings.tls.listen is None  # TLS on the main port: https://{domainName} works
    [api] = settings.apis
    assert (api.name, api.stage) == ("chat", "production")
    assert api.route_selection_expression == "$request.body.action"
    assert api.code_dir == CHAT / "handlers"
    assert api.environment == {"TABLE_NAME": TABLE}
    assert set(api.routes) == {"$connect", "$disconnect", "sendmessage"}


def test_channels_config_needs_no_database_and_no_disconnect_route() -> None:
    settings = load_config(CHANNELS / "sockway.yaml")
    assert settings.listen == "127.0.0.1:8080"
    assert settings.tls is not None and settings.tls.certificate == "auto"
    [api] = settings.apis
    assert (api.name, api.stage) == ("chat", "production")
    assert api.code_dir == CHANNELS / "handlers"
    assert set(api.routes) == {"$connect", "sendmessage"}


def test_chat_handlers_import_without_a_configured_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `AWS_ENDPOINT_URL_DYNAMODB=... sockway serve --config examples/chat/sockway.yaml` on a
    # machine without an AWS region configured. The gateway gives handlers AWS_REGION from the
    # API's `region` (us-east-1) before the handler modules are imported, as Lambda does, so
    # `boto3.resource("dynamodb")` at module level works.
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    load_config(CHAT / "sockway.yaml")


@pytest.mark.timeout(30)
async def test_chat_runs_without_aws_credentials_in_the_environment(
    dynamodb: Any, start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no credentials anywhere, handlers get placeholder ones before they are imported
    # ("locally any credentials do"), so module-level boto3 resources can sign their calls.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    gateway = await start_gateway(example_config(CHAT, tmp_path), base_dir=CHAT)
    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/production") as ws:
        await ws.send(send("hello"))
        assert await receive(ws) == "hello"


# -- examples/chat: DynamoDB + @connections -----------------------------------------------


@pytest.mark.timeout(30)
async def test_chat_broadcasts_to_everyone_and_tracks_connections(
    dynamodb: Any, start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(example_config(CHAT, tmp_path), base_dir=CHAT)
    url = f"ws://127.0.0.1:{gateway.port}/production"

    async with contextlib.AsyncExitStack() as stack:
        clients: list[ClientConnection] = []
        ids: list[str] = []
        for _ in range(3):
            before = await table_ids(dynamodb)
            clients.append(await stack.enter_async_context(websockets.connect(url)))
            # $connect has put the id into the table before the handshake completed.
            [new_id] = await table_ids(dynamodb) - before
            ids.append(new_id)
        assert await table_ids(dynamodb) == set(ids)

        await clients[0].send(send("hello"))
        for ws in clients:
            assert await receive(ws) == "hello"

        # A connection that is gone but still in the table is deleted by the next broadcast.
        stale = "Zm9vYmFyYmF6cXU="
        await asyncio.to_thread(dynamodb.put_item, Item={"connectionId": stale})
        assert await table_ids(dynamodb) == {*ids, stale}
        await clients[1].send(send("second"))
        for ws in clients:
            assert await receive(ws) == "second"
        await table_eventually(dynamodb, set(ids), "stale connection deleted (GoneException)")

        # $disconnect removes a closed client; the others keep chatting.
        await clients[2].close()
        await table_eventually(dynamodb, set(ids[:2]), "disconnected client removed")
        await clients[0].send(send("third"))
        for ws in clients[:2]:
            assert await receive(ws) == "third"
        for ws in clients[:2]:
            await assert_silent(ws)
            await ws.close()
        await table_eventually(dynamodb, set(), "every client removed")


@pytest.mark.timeout(30)
async def test_chat_handlers_reach_the_gateway_over_https_at_domain_name(
    dynamodb: Any, start_gateway: StartGateway, tmp_path: Path
) -> None:
    # send_message.py posts through https://{domainName}/{stage}; a client receiving its own
    # message proves that URL is the gateway's TLS endpoint and that boto3 trusts it.
    gateway = await start_gateway(example_config(CHAT, tmp_path), base_dir=CHAT)
    [endpoint] = gateway.endpoints
    assert endpoint.url("@connections") == (
        f"https://127.0.0.1:{gateway.port}/production/@connections/{{connectionId}}"
    )
    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/production") as ws:
        await ws.send(send("just me"))
        assert await receive(ws) == "just me"


# -- examples/chat-channels: the channel extension -----------------------------------------


@pytest.mark.timeout(30)
async def test_channels_chat_broadcasts_and_membership_ends_on_disconnect(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    gateway = await start_gateway(example_config(CHANNELS, tmp_path), base_dir=CHANNELS)
    url = f"ws://127.0.0.1:{gateway.port}/production"
    channel_url = f"http://127.0.0.1:{gateway.port}/production/@channels/chat"

    async with aiohttp.ClientSession() as http:

        async def members() -> set[str]:
            async with http.get(channel_url) as response:
                assert response.status == 200
                body = await response.json()
                assert body["channel"] == "chat"
                return set(body["connectionIds"])

        async with contextlib.AsyncExitStack() as stack:
            clients: list[ClientConnection] = []
            ids: list[str] = []
            for _ in range(3):
                before = await members()
                clients.append(await stack.enter_async_context(websockets.connect(url)))
                # $connect joined the channel before the handshake completed.
                [new_id] = await members() - before
                ids.append(new_id)
            assert await members() == set(ids)

            await clients[0].send(send("hello"))
            for ws in clients:
                assert await receive(ws) == "hello"

            await clients[1].close()

            async def two_left() -> bool:
                return await members() == {ids[0], ids[2]}

            await eventually(two_left, "closed connection left the channel")
            await clients[2].send(send("still here?"))
            for ws in (clients[0], clients[2]):
                assert await receive(ws) == "still here?"
            for ws in (clients[0], clients[2]):
                await assert_silent(ws)
