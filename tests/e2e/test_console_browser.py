"""The live console in a real browser (Debian's chromium driven by Playwright, no browser
download): a wscat client connects and sends, the page shows the connection, the message and
what the handler printed; the page publishes to a channel a client receives and disconnects a
client; on a non-loopback listener the page is refused without the token.

Prerequisite: ``apt-get install -y chromium`` (README "Development"). Without it these tests
fail, they do not skip. ``SOCKWAY_SCREENSHOTS=docs/img`` also writes the README's screenshots.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from tests.conftest import StartGateway
from tests.e2e.pusher_support import Client, pusher_app
from tests.e2e.support import handlers_dir

WSCAT = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "wscat"
SHOTS = os.environ.get("SOCKWAY_SCREENSHOTS")
TOKEN = "browser-test-token-0123456789"

HANDLERS = """
import json

def say(event, context):
    body = json.loads(event["body"])
    print("handler printed:", body["text"])
    return {"statusCode": 200, "body": "you said " + body["text"]}
"""


def _config(tmp_path: Path, **top: Any) -> dict[str, Any]:
    code = handlers_dir(tmp_path, HANDLERS, "talk.py")
    chat = {
        "name": "chat",
        "type": "websocket",
        "stage": "dev",
        "code_dir": str(code),
        "routes": {"say": {"handler": "talk.say", "route_response": True}},
    }
    return {**top, "apis": [chat, pusher_app()]}


async def test_console_watches_and_acts(
    start_gateway: StartGateway, tmp_path: Path, browser: Any
) -> None:
    gw = await start_gateway(_config(tmp_path))
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"http://127.0.0.1:{gw.port}/_sockway/")
    await page.locator("#live.on").wait_for(timeout=10_000)
    await page.get_by_text(f"ws://127.0.0.1:{gw.port}/dev").wait_for()

    # A wscat client connects and sends; the page shows it live, without a reload.
    out = tmp_path / "wscat.out"
    with out.open("wb") as sink:
        wscat = await asyncio.create_subprocess_exec(
            str(WSCAT),
            "-c",
            f"ws://127.0.0.1:{gw.port}/dev",
            "-x",
            json.dumps({"action": "say", "text": "hello console"}),
            "-w",
            "30",
            stdin=asyncio.subprocess.PIPE,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        row = page.locator("[data-testid=api][data-name=chat] [data-testid=connection]")
        await row.wait_for(timeout=10_000)
        conn_id = await row.get_attribute("data-id")
        message = page.locator(
            "[data-testid=tail-item][data-kind=message]", has_text="hello console"
        )
        await message.wait_for(timeout=10_000)
        request_id = await message.get_attribute("data-request")
        sent = page.locator(
            "[data-testid=tail-item][data-kind=out]", has_text="you said hello console"
        )
        await sent.wait_for()
        # The invocation of that message, with what the handler printed, Lambda-prefixed.
        invocation = page.locator(f"[data-testid=invocation][data-request='{request_id}']")
        await invocation.wait_for(state="attached")
        await message.click()  # opens the linked invocation
        logs = invocation.locator("[data-testid=invocation-logs]")
        await logs.wait_for()
        text = await logs.inner_text()
        assert "handler printed: hello console" in text
        assert f"\t{request_id}\thandler printed" in text and text.startswith("START RequestId")

        # Publish from the page to a Pusher channel a client has subscribed.
        client = await Client.connect(gw)
        assert (await client.subscribe("room"))["event"] == "pusher_internal:subscription_succeeded"
        pusher_row = page.locator(
            f"[data-testid=api][data-name=p] [data-testid=connection][data-id='{client.socket_id}']"
        )
        await pusher_row.filter(has_text="room").wait_for()  # its channel, shown live
        await page.select_option("[data-testid=publish-api]", "p")
        await page.fill("[data-testid=publish-channel]", "room")
        await page.fill("[data-testid=publish-event]", "greeting")
        await page.fill("[data-testid=publish-data]", '{"text":"hi from the page"}')
        await page.click("[data-testid=publish-button]")
        frame = await client.expect("greeting")
        assert frame["channel"] == "room" and json.loads(frame["data"]) == {
            "text": "hi from the page"
        }
        await page.get_by_text("published · delivered here to 1").wait_for()
        if SHOTS:  # the message's invocation is open (clicked above), its log showing
            await page.screenshot(path=str(Path(SHOTS) / "console.png"), full_page=True)
        await client.close()

        # Disconnect the wscat client from the page.
        await page.locator(
            f"[data-testid=connection][data-id='{conn_id}'] [data-testid=disconnect]"
        ).click()
        await asyncio.wait_for(wscat.wait(), 10)  # wscat ends when the server closes (-w 30)
        assert out.read_text() == "you said hello console\n"
        await page.locator(f"[data-testid=connection][data-id='{conn_id}']").wait_for(
            state="detached"
        )
        gone = page.locator("[data-testid=tail-item][data-kind=disconnect]", has_text=conn_id or "")
        assert "1000 Disconnected from the sockway console" in await gone.inner_text()
    finally:
        if wscat.returncode is None:
            wscat.kill()
            await wscat.wait()
    assert errors == []


async def test_console_refuses_without_token_on_non_loopback(
    start_gateway: StartGateway, tmp_path: Path, browser: Any
) -> None:
    # Bound to all interfaces (not loopback); the browser comes from 127.0.0.1, which must not
    # matter: the rule follows the listener's address.
    gw = await start_gateway(_config(tmp_path, listen="0.0.0.0:0", console={"token": TOKEN}))
    page = await browser.new_page()
    base = f"http://127.0.0.1:{gw.port}/_sockway/"
    response = await page.goto(base)
    assert response is not None and response.status == 401
    assert await page.locator("#live").count() == 0  # the console itself was not served
    status = await page.evaluate("fetch('api/state').then(r => r.status)")
    assert status == 401
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / "console-token.png"))
    await page.fill("input[name=token]", "not-the-token")
    await page.press("input[name=token]", "Enter")
    await page.get_by_text("That token is not the console's.").wait_for()
    await page.fill("input[name=token]", TOKEN)
    await page.press("input[name=token]", "Enter")
    await page.locator("#live.on").wait_for(timeout=10_000)
    assert page.url == base  # the token left the address bar; a cookie carries it
