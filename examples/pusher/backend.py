"""The app's back end for the Pusher example: auth endpoints, a send endpoint, a webhook receiver.

Written only with the `pusher` SDK and aiohttp, exactly as it would be for Pusher Channels or
soketi. Run: `python backend.py` (port 8000), next to `sockway serve --config sockway.yaml`.
The gateway's port is read from `listen:` in `sockway.yaml` (the one file that sets it);
`--gateway-port` overrides it, e.g. for `sockway serve --port 7001`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from pathlib import Path

import pusher
import yaml
from aiohttp import web

HERE = Path(__file__).resolve().parent
log = logging.getLogger("example.backend")

APP = web.AppKey("pusher", pusher.Pusher)
WEBHOOKS = web.AppKey("webhooks", list)
GATEWAY_PORT = web.AppKey("gateway_port", int)


def configured_gateway_port() -> int:
    """The port of `listen:` in this example's sockway.yaml."""
    listen = yaml.safe_load((HERE / "sockway.yaml").read_text())["listen"]
    return int(str(listen).rpartition(":")[2])


def make_app(gateway_port: int | None = None) -> web.Application:
    gateway_port = gateway_port or configured_gateway_port()
    client = pusher.Pusher(
        app_id=os.environ.get("PUSHER_APP_ID", "123"),
        key=os.environ.get("PUSHER_KEY", "app-key"),
        secret=os.environ.get("PUSHER_SECRET", "app-secret"),
        host="127.0.0.1",
        port=gateway_port,
        ssl=False,
    )
    app = web.Application()
    app[APP] = client
    app[WEBHOOKS] = []
    app[GATEWAY_PORT] = gateway_port
    app.router.add_get("/", index)
    app.router.add_get("/config.js", page_config)
    app.router.add_get("/pusher.js", pusher_js)
    app.router.add_post("/pusher/auth", channel_auth)
    app.router.add_post("/pusher/user-auth", user_auth)
    app.router.add_post("/messages", send_message)
    app.router.add_post("/pusher/webhooks", webhooks)
    return app


def _user(request: web.Request, form: dict[str, str]) -> dict[str, str]:
    # A real app takes the user from its session; the example trusts a `user` form field.
    name = form.get("user") or request.query.get("user") or "guest"
    return {"id": name, "name": name.title()}


async def channel_auth(request: web.Request) -> web.Response:
    """pusher-js posts socket_id and channel_name; answer with the SDK's signature."""
    form = {k: str(v) for k, v in (await request.post()).items()}
    channel = form["channel_name"]
    custom = None
    if channel.startswith("presence-"):
        user = _user(request, form)
        custom = {"user_id": user["id"], "user_info": {"name": user["name"]}}
    answer = request.app[APP].authenticate(channel, form["socket_id"], custom)
    # shared_secret (private-encrypted- channels) comes back as base64 bytes.
    return web.json_response(
        {k: v.decode() if isinstance(v, bytes) else v for k, v in answer.items()}
    )


async def user_auth(request: web.Request) -> web.Response:
    form = {k: str(v) for k, v in (await request.post()).items()}
    auth = request.app[APP].authenticate_user(form["socket_id"], _user(request, form))
    return web.json_response(auth)


async def send_message(request: web.Request) -> web.Response:
    """Publish a chat message with the SDK (excluding the sender's own socket)."""
    body = await request.json()
    await asyncio.to_thread(
        request.app[APP].trigger,
        "presence-chat",
        "message",
        {"user": body["user"], "text": body["text"]},
        body.get("socket_id"),
    )
    return web.json_response({"ok": True})


async def webhooks(request: web.Request) -> web.Response:
    """Accept only webhooks whose X-Pusher-Signature the SDK validates."""
    raw = (await request.read()).decode()
    body = request.app[APP].validate_webhook(
        key=request.headers.get("X-Pusher-Key", ""),
        signature=request.headers.get("X-Pusher-Signature", ""),
        body=raw,
    )
    if body is None:
        log.warning("rejected a webhook with a bad signature")
        return web.Response(status=401)
    for event in body["events"]:
        log.info("webhook: %s", json.dumps(event))
        request.app[WEBHOOKS].append(event)
    return web.Response(status=200)


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(HERE / "static" / "index.html")


async def page_config(request: web.Request) -> web.Response:
    """Where the page's pusher-js connects: the gateway's port, never hard-coded in the page."""
    port = request.app[GATEWAY_PORT]
    return web.Response(
        text=f"window.SOCKWAY_GATEWAY = {json.dumps({'wsPort': port})};\n",
        content_type="text/javascript",
    )


async def pusher_js(_: web.Request) -> web.StreamResponse:
    """pusher-js's browser build from the repository's node_modules (npm install pusher-js)."""
    for parent in HERE.parents:
        candidate = parent / "node_modules" / "pusher-js" / "dist" / "web" / "pusher.min.js"
        if candidate.exists():
            return web.FileResponse(candidate)
    return web.Response(status=404, text="run `npm install` at the repository root")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The Pusher example's back end")
    parser.add_argument("--port", type=int, default=8000, help="this back end's port")
    parser.add_argument(
        "--gateway-port", type=int, help="sockway's port (default: listen in sockway.yaml)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    web.run_app(make_app(args.gateway_port), host="127.0.0.1", port=args.port)
