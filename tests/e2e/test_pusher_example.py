"""``examples/pusher`` run from its own files: its ``sockway.yaml``, its SDK back end
(``backend.py``) and real pusher-js clients; its webhook receiver validates every body."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.e2e.pusher_js import PusherJs
from tests.e2e.support import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pusher"


def _backend_module() -> Any:
    spec = importlib.util.spec_from_file_location("pusher_example_backend", EXAMPLE / "backend.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def backend_site():
    """A socket bound first (the gateway's webhook URL needs its port), served later."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        runners.append(runner)

    yield f"http://127.0.0.1:{sock.getsockname()[1]}", serve
    for runner in runners:
        await runner.cleanup()
    sock.close()


async def test_pusher_example(start_gateway, backend_site):
    backend = _backend_module()
    config = yaml.safe_load((EXAMPLE / "sockway.yaml").read_text())
    config["listen"] = "127.0.0.1:0"
    base, serve = backend_site
    config["apis"][0]["webhooks"][0]["url"] = f"{base}/pusher/webhooks"
    gw = await start_gateway(config, EXAMPLE)
    app = backend.make_app(gw.port)
    await serve(app)

    js = await PusherJs.start(gw.port, "app-key", base)
    try:
        for user in ("ann", "bob"):
            await js.send(cmd="connect", id=user, params={"user": user})
            await js.wait_for(id=user, type="connected")
            await js.send(
                cmd="subscribe",
                id=user,
                channel="presence-chat",
                events=["message", "client-typing"],
            )
            await js.wait_for(id=user, type="subscribed", channel="presence-chat")
        assert (await js.wait_for(id="ann", type="member_added"))["info"] == {"name": "Bob"}
        await js.send(
            cmd="trigger",
            id="bob",
            channel="presence-chat",
            event="client-typing",
            data={"user": "bob"},
        )
        typing = await js.wait_for(id="ann", type="bound_event", event="client-typing")
        assert typing["user_id"] == "bob"
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/messages", json={"user": "ann", "text": "hi bob"}) as r,
        ):
            assert r.status == 200
        message = await js.wait_for(id="bob", type="bound_event", event="message")
        assert message["data"] == {"user": "ann", "text": "hi bob"}
        received = app[backend.WEBHOOKS]
        await wait_until(lambda: {"member_added", "client_event"} <= {e["name"] for e in received})
        assert {e["user_id"] for e in received if e["name"] == "member_added"} == {"ann", "bob"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as r:
                assert r.status == 200 and "new Pusher(" in await r.text()
            async with http.get(f"{base}/pusher.js") as r:
                assert r.status == 200
    finally:
        await js.stop()


async def test_the_page_connects_to_the_gateway_wherever_it_listens(
    start_gateway, backend_site, browser
):
    # The gateway on an ephemeral port (not the 6001 of sockway.yaml): the page learns it
    # from the back end's /config.js, so nothing in the page or the back end hard-codes it.
    backend = _backend_module()
    config = yaml.safe_load((EXAMPLE / "sockway.yaml").read_text())
    assert backend.configured_gateway_port() == int(config["listen"].rpartition(":")[2])
    config["listen"] = "127.0.0.1:0"
    base, serve = backend_site
    config["apis"][0]["webhooks"][0]["url"] = f"{base}/pusher/webhooks"
    gw = await start_gateway(config, EXAMPLE)
    assert gw.port != 6001
    await serve(backend.make_app(gw.port))
    page = await browser.new_page()
    await page.goto(f"{base}/?user=ann")
    await page.locator("#members", has_text="Ann").wait_for(timeout=15_000)
    assert "6001" not in (EXAMPLE / "static" / "index.html").read_text()
