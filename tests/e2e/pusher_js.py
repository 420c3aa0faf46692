"""Real pusher-js (npm, Node build) clients driven over a line protocol (``js/pusher_driver.js``),
and an auth endpoint written with the real ``pusher`` SDK, as an app's back end would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("js") / "pusher_driver.js"


class AuthServer:
    """``/pusher/auth`` (channels) and ``/pusher/user-auth`` (signin) using ``authenticate``."""

    def __init__(self, client: Any, users: dict[str, dict[str, Any]]) -> None:
        self.client = client  # pusher.Pusher
        self.users = users  # socket-independent: the user id to use per pusher-js client name
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.user_for_socket: dict[str, str] = {}

    async def channel_auth(self, request: web.Request) -> web.Response:
        form = await request.post()
        socket_id, channel = str(form["socket_id"]), str(form["channel_name"])
        if channel == "private-forbidden":
            return web.Response(status=403)
        if channel == "private-badsig":
            # A real signature, but for another socket: sockway must refuse it.
            return web.json_response(self.client.authenticate(channel, "1.1"))
        custom = None
        if channel.startswith("presence-"):
            user = self.users[self.user_for_socket.get(socket_id, "anon")]
            custom = {"user_id": user["id"], "user_info": {"name": user["name"]}}
        answer = self.client.authenticate(channel, socket_id, custom)
        # The py SDK returns shared_secret (encrypted channels) as base64 bytes.
        return web.json_response(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in answer.items()}
        )

    async def user_auth(self, request: web.Request) -> web.Response:
        form = await request.post()
        socket_id = str(form["socket_id"])
        user = self.users[self.user_for_socket.get(socket_id, "anon")]
        return web.json_response(self.client.authenticate_user(socket_id, user))

    async def start(self) -> AuthServer:
        app = web.Application()
        app.router.add_post("/pusher/auth", self.channel_auth)
        app.router.add_post("/pusher/user-auth", self.user_auth)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class PusherJs:
    """One Node process holding any number of named pusher-js clients."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, port: int, key: str, auth_url: str, script: Path = DRIVER) -> PusherJs:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            "127.0.0.1",
            str(port),
            key,
            auth_url,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        js = cls(proc)
        await js.wait_for(type="ready")
        return js

    async def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def wait_for(self, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """The first report (seen before or arriving) whose fields match."""

        def match(report: dict[str, Any]) -> bool:
            return all(report.get(k) == v for k, v in fields.items())

        for report in self.seen:
            if match(report):
                self.seen.remove(report)
                return report
        assert self.proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"pusher-js never reported {fields}; saw {self.seen}")
            line = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            if not line:
                raise AssertionError(f"pusher-js exited; saw {self.seen}")
            report = json.loads(line)
            if match(report):
                return report
            self.seen.append(report)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
