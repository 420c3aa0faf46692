"""Redis for the tests (issue 6): the machine's, or a private ``redis-server``; never a skip.

``redis_url()`` is the Redis at 127.0.0.1:6379 when it answers, else one private server started
for the whole test session (stopped at exit); without ``redis-server`` the test fails. Tests
that stop, pause or restart Redis use a ``RedisServer`` of their own on an ephemeral port.
Tests sharing a Redis use key prefixes of their own.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A private redis-server (no persistence) that tests may stop, pause and restart."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server not found: the scale-out tests need Redis")
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (again, on the same port: empty, as after a restart without persistence)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_ping(self.port):  # a new process: nothing to await, poll with a deadline
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


_private: list[RedisServer] = []


def redis_url() -> str:
    """The machine's Redis, else a private one started once for this test session."""
    if redis_ping(6379):
        return "redis://127.0.0.1:6379/0"
    if not _private:
        server = RedisServer(Path(tempfile.mkdtemp(prefix="sockway-redis-")))
        _private.append(server.start())
        atexit.register(server.stop)
    return _private[0].url
