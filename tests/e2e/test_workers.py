"""``sockway serve --workers N`` as a user runs it: a real supervisor process, real workers on
one SO_REUSEPORT port, a real Redis broker setting, real WebSocket clients (issue 6).

Which worker holds a connection is told by the two-way route ``pid`` (its handler answers the
worker's pid and the connection id); the worker pids are the supervisor's children.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection as Ws
from websockets.exceptions import ConnectionClosed

from sockway.gateway.supervisor import MAX_BACKOFF_S, backoff_s, describe_exit
from tests.redis_support import redis_url as shared_redis_url

SOCKWAY = [sys.executable, "-m", "sockway"]

PID_HANDLER = """
import os
import sys

# A worker (not the supervisor, which only validates the file) fails to start while the
# marker file exists: a start-up failure on demand.
if "--worker-fd" in sys.argv and os.path.exists(os.environ["FAIL_MARKER"]):
    raise RuntimeError("worker start-up failure on purpose")


def handler(event, context):
    return {"statusCode": 200, "body": f"{os.getpid()} {event['requestContext']['connectionId']}"}
"""


@pytest.fixture
def redis_url() -> str:
    """The shared Redis on 6379, else a private redis-server; never a skip."""
    return shared_redis_url()


def write_config(tmp_path: Path, redis_url: str | None, workers: int = 2) -> Path:
    (tmp_path / "h").mkdir(exist_ok=True)
    (tmp_path / "h" / "pidroute.py").write_text(PID_HANDLER)
    broker = (
        f'broker: {{url: "{redis_url}", key_prefix: "t-{uuid.uuid4().hex[:12]}"}}\n'
        if redis_url
        else ""
    )
    path = tmp_path / "sockway.yaml"
    path.write_text(f"""
listen: 127.0.0.1:0
workers: {workers}
tls: {{certificate: auto}}
shutdown_grace_s: 5
{broker}apis:
  - name: t
    type: websocket
    code_dir: ./h
    environment: {{FAIL_MARKER: "{tmp_path / "fail-marker"}"}}
    routes:
      pid: {{handler: pidroute.handler, route_response: true}}
""")
    return path


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def poll(predicate: object, what: str, timeout_s: float = 20.0) -> None:
    """Wait until ``predicate()`` holds (an event we cannot await: a process appearing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    port: int
    banner: str
    log: list[str]
    logged: asyncio.Event

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/dev"

    async def wait_log(self, text: str, start: int = 0, timeout_s: float = 20.0) -> int:
        """Index of the first stderr line from ``start`` on containing ``text``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            for i in range(start, len(self.log)):
                if text in self.log[i]:
                    return i
            self.logged.clear()
            left = deadline - loop.time()
            assert left > 0, f"no log line with {text!r}:\n" + "".join(self.log)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.logged.wait(), left)


async def _collect(stream: asyncio.StreamReader, log: list[str], logged: asyncio.Event) -> None:
    async for line in stream:
        log.append(line.decode())
        logged.set()


@asynccontextmanager
async def supervisor(tmp_path: Path, config: Path) -> AsyncIterator[Served]:
    proc = await asyncio.create_subprocess_exec(
        *SOCKWAY,
        "serve",
        "--config",
        str(config),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    logged = asyncio.Event()
    collector = asyncio.get_running_loop().create_task(_collect(proc.stderr, log, logged))
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("  health:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "sockway exited early:\n" + "".join(lines + log)
            lines.append(line)
        banner = "".join(lines)
        port = re.search(r"health: http://127\.0\.0\.1:(\d+)/health", banner)
        assert port is not None, banner
        yield Served(proc, int(port.group(1)), banner, log, logged)
    finally:
        if proc.returncode is None:
            for pid in children(proc.pid):
                os.kill(pid, signal.SIGKILL)
            proc.kill()
            await proc.wait()
        collector.cancel()


async def whose(ws: Ws) -> tuple[int, str]:
    """(pid of the worker holding ``ws``, its connection id)."""
    await ws.send('{"action":"pid"}')
    pid, conn_id = str(await asyncio.wait_for(ws.recv(), 10)).split()
    return int(pid), conn_id


async def connect_until(url: str, want: set[int], timeout_s: float = 20.0) -> dict[int, Ws]:
    """Open connections until one is held by each worker of ``want`` (a restarted worker
    takes connections once it listens: poll with a deadline); the extra ones are closed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    held: dict[int, Ws] = {}
    while set(held) != want:
        assert loop.time() < deadline, f"connections never reached every worker of {want}"
        ws = await websockets.connect(url)
        pid, _ = await whose(ws)
        assert pid in want, f"connection served by pid {pid}, not a worker {want}"
        if pid in held:
            await ws.close()
        else:
            held[pid] = ws
    return held


async def test_workers_share_the_port_restart_and_drain(tmp_path: Path, redis_url: str) -> None:
    async with supervisor(tmp_path, write_config(tmp_path, redis_url)) as served:
        assert "listening: 2 workers" in served.banner
        assert f"ws://127.0.0.1:{served.port}/dev" in served.banner
        assert "development CA:" in served.banner  # created once, by the supervisor
        workers = children(served.proc.pid)
        assert len(workers) == 2

        # Many connections: the kernel spreads them over both workers.
        clients = [await websockets.connect(served.url) for _ in range(24)]
        seen = [(await whose(ws))[0] for ws in clients]
        assert set(seen) == workers, seen
        for ws in clients:
            await ws.close()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{served.port}/health") as r,
        ):
            health = await r.json()
        assert health["status"] == "ok" and health["pid"] in workers

        # SIGKILL one worker: the other keeps its connections and the port keeps accepting.
        held = await connect_until(served.url, workers)
        victim, survivor = sorted(workers)
        os.kill(victim, signal.SIGKILL)
        await poll(lambda: victim not in children(served.proc.pid), "the supervisor to reap it")
        assert (await whose(held[survivor]))[0] == survivor
        for _ in range(10):
            async with websockets.connect(served.url) as ws:
                assert (await whose(ws))[0] != victim

        # The supervisor restarts it, and the new worker accepts connections too.
        await poll(lambda: len(children(served.proc.pid)) == 2, "the restarted worker")
        (replacement,) = children(served.proc.pid) - {survivor}
        now = await connect_until(served.url, {survivor, replacement})

        # SIGTERM the supervisor: every worker drains (1001 to its clients) and all exit 0.
        served.proc.send_signal(signal.SIGTERM)
        for ws in now.values():
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 10)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        assert await asyncio.wait_for(served.proc.wait(), 20) == 0
        assert not alive(survivor) and not alive(replacement)


async def test_connections_api_reaches_a_connection_on_another_worker(
    tmp_path: Path, redis_url: str
) -> None:
    async with supervisor(tmp_path, write_config(tmp_path, redis_url)) as served:
        clients = [await websockets.connect(served.url) for _ in range(8)]
        ids = [(await whose(ws))[1] for ws in clients]
        base = f"http://127.0.0.1:{served.port}/dev/@connections"
        # A new TCP connection per request: each lands on either worker.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            for ws, conn_id in zip(clients, ids, strict=True):
                for n in range(3):
                    async with http.post(f"{base}/{conn_id}", data=f"hi {n}") as r:
                        assert r.status == 200, await r.text()
                    assert await asyncio.wait_for(ws.recv(), 10) == f"hi {n}"


async def test_a_worker_failing_at_restart_is_retried_with_backoff(
    tmp_path: Path, redis_url: str
) -> None:
    async with supervisor(tmp_path, write_config(tmp_path, redis_url)) as served:
        workers = children(served.proc.pid)
        victim = min(workers)
        marker = tmp_path / "fail-marker"
        marker.touch()
        os.kill(victim, signal.SIGKILL)
        first = await served.wait_log(f"(pid {victim}) exited (killed by SIGKILL); restarting it")
        # Its replacement fails at start-up: the next restart waits twice as long.
        second = await served.wait_log("(exit status 1); restarting it in", first)
        assert "worker start-up failure on purpose" in "".join(served.log[first:second])
        marker.unlink()
        await served.wait_log("worker 1 restarted (pid", second)
        delays = [
            float(re.findall(r"restarting it in ([\d.]+) s", served.log[i])[0])
            for i in (first, second)
        ]
        # 0 s after a healthy run (≥ 10 s), else 0.5 s; then doubled.
        assert delays in ([0.5, 1.0], [0.0, 0.5]), delays
        assert len(children(served.proc.pid)) == 2
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.proc.wait(), 20) == 0


async def test_a_worker_failing_at_the_first_start_stops_the_supervisor(
    tmp_path: Path, redis_url: str
) -> None:
    config = write_config(tmp_path, redis_url)
    (tmp_path / "fail-marker").touch()
    proc = await asyncio.create_subprocess_exec(
        *SOCKWAY, "serve", "--config", str(config), cwd=tmp_path, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    text = stderr.decode()
    assert "worker start-up failure on purpose" in text
    assert re.search(r"worker \d \(pid \d+\) failed to start \(exit status 1\)", text), text


def _serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SOCKWAY, "serve", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_workers_need_a_broker_and_a_free_port(tmp_path: Path, redis_url: str) -> None:
    config = write_config(tmp_path, None, workers=2)
    result = _serve(tmp_path, "--config", str(config))
    assert result.returncode == 1
    assert "Invalid configuration:\n  workers: 2 worker processes need a 'broker'" in result.stderr
    check = subprocess.run(
        [*SOCKWAY, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 1 and "workers: 2 worker processes need" in check.stderr

    config = write_config(tmp_path, None, workers=1)
    result = _serve(tmp_path, "--config", str(config), "--workers", "3")
    assert result.returncode == 1
    assert "--workers: 3 worker processes need a 'broker'" in result.stderr

    # A port held by another program (here without SO_REUSEPORT) is refused before any worker.
    config = write_config(tmp_path, redis_url, workers=2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(tmp_path, "--config", str(config), "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


def test_restart_backoff_and_exit_descriptions() -> None:
    assert [backoff_s(n) for n in range(5)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert backoff_s(100) == MAX_BACKOFF_S
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exit status 3"
