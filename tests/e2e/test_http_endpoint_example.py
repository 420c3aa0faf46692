"""``examples/http-endpoint``: the chat with its handlers in an HTTP service, run from its own
``sockway.yaml`` (the service's address replaced by an ephemeral port) with real clients."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest
import websockets
import yaml
from aiohttp import web
from websockets.exceptions import InvalidStatus

from tests.conftest import StartGateway

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "http-endpoint"
SECRET = "example-secret-for-the-test"


def _service_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_endpoint_service", EXAMPLE / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def service_port() -> AsyncIterator[int]:
    service = _service_module().ChatService(SECRET.encode())
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def test_chat_through_the_http_service(
    service_port: int, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOCKWAY_HTTP_SECRET", SECRET)
    text = (EXAMPLE / "sockway.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(text.replace("127.0.0.1:9000", f"127.0.0.1:{service_port}"))
    config["listen"] = "127.0.0.1:0"
    gw = await start_gateway(config, EXAMPLE)
    base = f"ws://127.0.0.1:{gw.port}/production"

    for query in ("", "?name=", "?name=not%20a%20name"):
        with pytest.raises(InvalidStatus) as info:
            async with websockets.connect(base + query):
                pass
        assert info.value.response.status_code == 401, query

    async with (
        websockets.connect(base + "?name=alice") as alice,
        websockets.connect(base + "?name=bob") as bob,
    ):
        await alice.send('{"action":"sendmessage","message":"hi"}')
        assert await asyncio.wait_for(alice.recv(), 5) == "alice: hi"
        assert await asyncio.wait_for(bob.recv(), 5) == "alice: hi"
        await bob.send('{"action":"sendmessage","message":"hello"}')
        assert await asyncio.wait_for(alice.recv(), 5) == "bob: hello"
        assert await asyncio.wait_for(bob.recv(), 5) == "bob: hello"
