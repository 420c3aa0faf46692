"""Real gateway processes on a real Redis (issue 6's end-to-end tests).

``redis_url()`` and ``RedisServer`` come from ``tests/redis_support.py``. ``Node`` is one ``sockway serve`` process;
each cluster gets a key prefix of its own so tests never see each other's keys.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.appsync_support import events_api
from tests.e2e.pusher_support import pusher_app

WS_HANDLERS = """
def whoami(event, context):
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}
"""


def cluster_config(
    tmp_path: Path, redis: str, webhook_url: str | None = None, **broker: Any
) -> Path:
    """One YAML file for every node: a websocket API, a Pusher app and an events API."""
    handlers = tmp_path / "handlers"
    handlers.mkdir(exist_ok=True)
    (handlers / "cw.py").write_text(WS_HANDLERS)
    app = pusher_app()
    if webhook_url is not None:
        app["webhooks"] = [
            {
                "url": webhook_url,
                "event_types": [
                    "channel_occupied",
                    "channel_vacated",
                    "member_added",
                    "member_removed",
                ],
            }
        ]
        app["webhook_delivery"] = {
            "initial_backoff_s": 0.05,
            "max_backoff_s": 0.2,
            "retry_window_s": 5,
            "timeout_s": 2,
        }
    config = {
        "listen": "127.0.0.1:0",
        "state_dir": str(tmp_path / "state"),
        "log_level": "WARNING",
        "broker": {
            "url": redis,
            "key_prefix": f"test-{uuid.uuid4().hex[:12]}",
            "heartbeat_s": 0.2,
            "node_ttl_s": 1.0,
            "unsubscribe_grace_s": 0.2,
            **broker,
        },
        "apis": [
            {
                "name": "t",
                "type": "websocket",
                "stage": "dev",
                "code_dir": str(handlers),
                "routes": {"whoami": {"handler": "cw.whoami", "route_response": True}},
            },
            app,
            events_api(),
        ],
    }
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Node:
    """One ``sockway serve`` process; ``port`` once it listens."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = 0
        self.output: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Node:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sockway",
            "serve",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while not self.port:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise AssertionError("sockway exited early:\n" + "".join(self.output))
                self.output.append(line)
                found = re.search(r"health: http://[^:]+:(\d+)/health", line)
                if found:
                    self.port = int(found.group(1))
        self._reader = asyncio.get_running_loop().create_task(self._drain())
        return self

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode())

    def log(self) -> str:
        return "".join(self.output)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(20):
            code = await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return code

    async def stop(self) -> None:
        if self.alive:
            await self.signal(signal.SIGKILL)


async def start_nodes(config: Path, n: int) -> list[Node]:
    return list(await asyncio.gather(*(Node(config).start() for _ in range(n))))
