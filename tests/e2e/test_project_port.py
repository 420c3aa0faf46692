"""``sockway serve --template/--serverless --port 0``: the port chosen is held from the moment
it is chosen (the handlers' environment and the generated configuration name it) until the
gateway listens on it, and the announced URL is that port (``projects.launch``).

Before, the port was found by binding a socket and closing it, then bound again by the gateway
after the project was prepared (DynamoDB started, dependencies installed, handlers imported):
anything could take the port in that window. Here a real ``sockway`` process is started and,
as soon as it has written the configuration naming the port, the test tries to take that port
itself; it must find it in use, and then connect to the announced URL.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.e2e.projects_support import SOCKWAY, collect, copy_project, stop_sockway


def _try_to_take(port: int) -> socket.socket | None:
    """A listening socket on ``127.0.0.1:port`` (so the port was free), or ``None`` (in use)."""
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.bind(("127.0.0.1", port))
    except OSError as exc:
        squatter.close()
        assert exc.errno == errno.EADDRINUSE, exc
        return None
    squatter.listen(1)
    return squatter


@pytest.mark.timeout(180)
@pytest.mark.parametrize("workers", [1, 2])
async def test_port_0_is_held_from_its_choice_to_the_announcement(
    tmp_path: Path, workers: int
) -> None:
    project = copy_project("sls_chat", tmp_path)
    args = ["--serverless", "serverless.yml", "--port", "0"]
    if workers > 1:
        from tests.redis_support import redis_url

        args += ["--workers", str(workers), "--broker", redis_url()]
    proc = await asyncio.create_subprocess_exec(
        *SOCKWAY,
        "serve",
        *args,
        cwd=project,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    collector = asyncio.get_running_loop().create_task(collect(proc.stderr, log))
    squatter: socket.socket | None = None
    chosen: int | None = None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("  health:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
            if not line:
                await asyncio.wait_for(proc.wait(), 20)
                raise AssertionError("sockway exited early:\n" + "".join(lines + log))
            lines.append(line)
            found = re.match(r"\s+configuration: (\S+)$", line)
            if found and chosen is None:
                # Written before the gateway starts: the window the old code left open.
                chosen = int(
                    yaml.safe_load(Path(found.group(1)).read_text())["listen"].split(":")[-1]
                )
                squatter = _try_to_take(chosen)
                assert squatter is None, f"port {chosen} was free before sockway listened on it"
        banner = "".join(lines)
        assert chosen is not None, banner
        announced = re.search(r"health: http://127\.0\.0\.1:(\d+)/health", banner)
        assert announced is not None, banner
        assert int(announced.group(1)) == chosen
        assert f"ws://127.0.0.1:{chosen}/dev" in banner  # the API's URL names it too
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{chosen}/health") as resp,
        ):
            assert resp.status == 200
    finally:
        if squatter is not None:
            squatter.close()
        await stop_sockway(proc, collector)
