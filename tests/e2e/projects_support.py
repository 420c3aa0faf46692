"""Run ``sockway serve --template/--serverless`` as a real process on a copy of a project."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECTS = Path(__file__).resolve().parent / "projects"
SOCKWAY = [sys.executable, "-m", "sockway"]
WSCAT = Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "wscat"


def copy_project(name: str, tmp_path: Path) -> Path:
    """A fresh copy of ``tests/e2e/projects/<name>`` (sockway writes its state next to it)."""
    target = tmp_path / name
    shutil.copytree(PROJECTS / name, target, ignore=shutil.ignore_patterns(".sockway"))
    return target


@dataclass
class ServedProject:
    proc: asyncio.subprocess.Process
    port: int
    banner: str
    log: list[str]

    def find(self, pattern: str) -> str:
        match = re.search(pattern, self.banner)
        assert match is not None, f"{pattern!r} not in the banner:\n{self.banner}"
        return match.group(1)

    @property
    def dynamodb_endpoint(self) -> str:
        return self.find(r"DynamoDB: (http://127\.0\.0\.1:\d+)")

    @property
    def ca_file(self) -> str:
        return self.find(r"development CA: (\S+)")


async def collect(stream: asyncio.StreamReader, log: list[str]) -> None:
    """Keep a process's stderr lines (decoded) while the test reads its stdout."""
    async for line in stream:
        log.append(line.decode(errors="replace"))


async def stop_sockway(proc: asyncio.subprocess.Process, collector: asyncio.Task[None]) -> None:
    """SIGTERM (SIGKILL after 20 s) unless it already ended, then stop collecting its log."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    collector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector


@asynccontextmanager
async def serve_project(cwd: Path, *args: str) -> AsyncIterator[ServedProject]:
    proc = await asyncio.create_subprocess_exec(
        *SOCKWAY,
        "serve",
        *args,
        "--port",
        "0",
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    log: list[str] = []
    collector = asyncio.get_running_loop().create_task(collect(proc.stderr, log))
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("  health:"):
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if not line:
                await asyncio.sleep(0.2)
                raise AssertionError("sockway exited early:\n" + "".join(lines + log))
            lines.append(line)
        banner = "".join(lines)
        port = re.search(r"health: http://127\.0\.0\.1:(\d+)/health", banner)
        assert port is not None, banner
        yield ServedProject(proc, int(port.group(1)), banner, log)
    finally:
        await stop_sockway(proc, collector)


class Wscat:
    """An interactive wscat (stdin stays open, output into a file: Node drops piped stdout)."""

    def __init__(self, proc: asyncio.subprocess.Process, out: Path) -> None:
        self.proc = proc
        self.out = out

    @classmethod
    async def connect(cls, tmp_path: Path, url: str, *extra: str) -> Wscat:
        assert WSCAT.exists(), "run `make install` (it installs wscat with npm)"
        out = tmp_path / f"wscat-{len(list(tmp_path.glob('wscat-*')))}.out"
        sink = out.open("wb")
        proc = await asyncio.create_subprocess_exec(
            str(WSCAT),
            *extra,
            "-c",
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
        )
        sink.close()
        # wscat prints "Connected" only to a terminal: callers wait for what $connect did.
        return cls(proc, out)

    def text(self) -> str:
        return self.out.read_text(errors="replace")

    async def wait_for(self, text: str, timeout_s: float = 30) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while text not in self.text():
            if self.proc.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"wscat never printed {text!r}:\n{self.text()}")
            await asyncio.sleep(0.05)
        return self.text()

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
