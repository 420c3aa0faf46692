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
import redis


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
        self.extra: list[str] = []  # more redis-server arguments

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (again, on the same port: empty, as after a restart without persistence)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory), *self.extra]
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


class RedisClusterServers:
    """A private Redis Cluster on ephemeral ports: ``primaries`` with ``replicas`` each, slots
    spread by ``redis-cli --cluster create``, failures detected after 1 s (so a replica takes
    over within seconds). ``url(i)`` is node ``i``'s address; a client may start from any."""

    def __init__(self, directory: Path, primaries: int = 3, replicas: int = 0) -> None:
        n = primaries * (1 + replicas)
        self.replicas = replicas
        self.servers = [RedisServer(directory / f"node{i}") for i in range(n)]

    def url(self, i: int = 0) -> str:
        return f"redis://127.0.0.1:{self.servers[i].port}"

    def start(self) -> RedisClusterServers:
        for server in self.servers:
            server.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            # the bus port would be port + 10000, past 65535 for most ephemeral ports
            server.extra += ["--cluster-port", str(free_port()), "--cluster-node-timeout", "1000"]
            server.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli not found: the Redis Cluster tests need it")
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        replicas = ["--cluster-replicas", str(self.replicas)]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-yes", *replicas],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while not all(self._cluster_ok(s.port) for s in self.servers):
            if time.monotonic() > deadline:
                pytest.fail("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        return self

    def primary_of(self, key: str) -> int:
        """The index of the server that is the primary of ``key``'s slot now."""
        server = next(s for s in self.servers if s.proc is not None)
        with redis.Redis(port=server.port, socket_timeout=2) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    port = int(primary[1])
                    return next(i for i, s in enumerate(self.servers) if s.port == port)
        raise AssertionError(f"no primary holds {key}")

    def alive(self) -> list[RedisServer]:
        return [s for s in self.servers if s.proc is not None]

    @staticmethod
    def _cluster_ok(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"CLUSTER INFO\r\n")
                return b"cluster_state:ok" in s.recv(4096)
        except OSError:
            return False

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


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
