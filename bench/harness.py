"""Processes of a benchmark trial: the server under test, load generators, CPU and RSS readings.

The server runs pinned to ``SERVER_CPU``, every load generator to ``CLIENT_CPU`` (``taskset``);
all traffic is on loopback; every wait has a deadline and every process is stopped by the trial
that started it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, CLIENT_CPU = 0, 1
LOGS = HERE / "results" / "logs"

_src = [0]


def pinned(cpu: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def next_source_ip() -> str:
    """A fresh loopback source address per load process: no ephemeral-port or TIME_WAIT
    exhaustion across many trials (28k ports per source address here)."""
    _src[0] += 1
    k = _src[0]
    return f"127.{20 + (k // 62500) % 200}.{(k // 250) % 250}.{k % 250 + 1}"


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError):
        return float("nan")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (a gateway's handler worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (an exited child's share drops out)."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def rss_kb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


@dataclass(frozen=True)
class System:
    """A server under test: how to start it and which URLs speak the benchmark protocol."""

    name: str
    cmd: list[str]  # "{port}" is replaced
    ready_marker: str
    sub_path: str = "/sub"  # a subscriber of the fan-out channel
    plain_path: str = "/sub"  # a connection that only connects (idle, connect rate, sinks)
    # Front doors whose subscribers must say something first or wrap the payload (AppSync
    # Events, Pusher): loadgen's --header/--hello (upgrade headers, frames sent on open),
    # --ack-marker (subscription confirmed) and --stamp-marker, for subscribers and the probe.
    subscribe_args: tuple[str, ...] = ()
    pub_path: str | None = "/pub"  # WebSocket publisher (None: publishes over HTTP)
    http_publish: str | None = None  # HTTP path of a publication
    publish_args: tuple[str, ...] = ()  # loadgen pub: --publish-kind, --marker, credentials
    echo_path: str = "/echo"
    echo_template: str = "{}"
    echo_warmup_s: float = 1.0  # before the measured window (process workers: cold starts)
    env: dict[str, str] = field(default_factory=dict)


class Server:
    """One fresh server process of a ``System`` for one trial."""

    def __init__(self, system: System, label: str) -> None:
        self.system = system
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = open(LOGS / f"{label}.log", "w")  # noqa: SIM115 (closed in stop)
        cmd = [c.replace("{port}", str(self.port)) for c in system.cmd]
        env = {**os.environ, **system.env}
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, cmd),
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=HERE,
            env=env,
        )
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if system.ready_marker in line:
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{system.name} did not start (see {self.log.name})")

    def stop(self) -> None:
        terminate(self.proc)
        self.log.close()


class Load:
    """One load-generator process (``loadgen.py``), pinned to the client core."""

    def __init__(self, mode: str, *args: Any) -> None:
        cmd = [PY, str(HERE / "loadgen.py"), mode, "--src-ip", next_source_ip(), *map(str, args)]
        self.proc = subprocess.Popen(
            pinned(CLIENT_CPU, cmd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(LOGS / "loadgen.log", "a"),  # noqa: SIM115
            text=True,
            cwd=HERE,
        )
        self.pid = self.proc.pid

    def ready(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return dict(json.loads(line[6:]))
            if not line:
                break
        raise RuntimeError("load generator did not get ready")

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            text, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            text, _ = self.proc.communicate()
        for line in reversed(text.strip().splitlines()):
            if line.startswith("{"):
                return dict(json.loads(line))
        raise RuntimeError("load generator gave no result")


class CpuMeter:
    """Samples the CPU seconds of tracked pids every 20 ms; ``percent`` over a window given in
    ``time.monotonic_ns()`` (the clock the load generators stamp with). 100 % = one core."""

    def __init__(self) -> None:
        self.pids: dict[str, list[int]] = {}
        self.samples: list[tuple[int, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def track(self, role: str, pid: int, tree: bool = True) -> None:
        """Count ``pid`` and (``tree``) its child processes (the gateway's handler workers)."""
        self.pids.setdefault(role, []).append(-pid if not tree else pid)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            snap = {
                r: sum(cpu_seconds(-p) if p < 0 else tree_cpu_seconds(p) for p in ps)
                for r, ps in list(self.pids.items())
            }
            self.samples.append((time.monotonic_ns(), snap))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def seconds(self, role: str, t0: int, t1: int) -> float:
        """CPU seconds of ``role`` over [t0, t1] (the samples just outside the window)."""
        pts = [(t, s[role]) for t, s in self.samples if role in s and s[role] == s[role]]
        before = [p for p in pts if p[0] <= t0] or pts[:1]
        after = [p for p in pts if p[0] >= t1] or pts[-1:]
        if not before or not after:
            return float("nan")
        return after[0][1] - before[-1][1]

    def percent(self, role: str, t0: int, t1: int) -> float:
        pts = [(t, s[role]) for t, s in self.samples if role in s and s[role] == s[role]]
        before = [p for p in pts if p[0] <= t0] or pts[:1]
        after = [p for p in pts if p[0] >= t1] or pts[-1:]
        if not before or not after or after[0][0] <= before[-1][0]:
            return float("nan")
        (ta, ca), (tb, cb) = before[-1], after[0]
        return 100 * (cb - ca) / ((tb - ta) / 1e9)


def split(n: int, parts: int) -> list[int]:
    parts = max(1, min(parts, n))
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
