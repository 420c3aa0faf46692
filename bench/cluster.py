"""Cost of cross-node delivery (issue 6): CPU per delivered message, one node vs two on Redis.

A scenario of ``bench/run.py`` (``--only cluster``); each trial runs one configuration with
fresh processes:

  1-node-memory    one gateway, embedded memory broker (the reference: ratios are to this)
  1-node-redis     one gateway on the Redis broker
  2-nodes-split    two gateways on Redis, subscribers split evenly, publisher on A
  2-nodes-remote   two gateways on Redis, every subscriber on B, publisher on A (pure cross-node)

N websocket-API subscribers of channel ``fan`` (joined by the bench ``$connect`` handler on the
node they connect to); publications by ``POST /bench/@channels/fan`` on node A at a fixed rate
(``cluster_msgs_per_s`` deliveries per second). CPU seconds (utime + stime, ``/proc/<pid>/stat``)
of every gateway and of a private ``redis-server`` started for the trial (its pid from
``INFO server``: the numbers are its own, not the shared Redis of other users) over the
measured window, divided by the messages delivered → µs of CPU per delivered message, total and
per process. Gateways and redis-server are pinned to CPU 0 (two gateways share that core), the
load generators to CPU 1. The probe subscriber of the publisher sits on the node of the
subscribers (B in ``2-nodes-remote``), so that configuration has no local member on A.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness import (
    HERE,
    LOGS,
    PY,
    REPO,
    SERVER_CPU,
    CpuMeter,
    Load,
    Server,
    System,
    free_port,
    percentile,
    pinned,
    split,
    terminate,
)


@dataclass(frozen=True)
class Layout:
    nodes: int
    redis: bool
    sub_nodes: tuple[int, int]  # node index of each of the two subscriber processes
    probe_node: int


CONFIGS = {
    "1-node-memory": Layout(1, False, (0, 0), 0),
    "1-node-redis": Layout(1, True, (0, 0), 0),
    "2-nodes-split": Layout(2, True, (0, 1), 0),
    "2-nodes-remote": Layout(2, True, (1, 1), 1),
}
ROLES = ("gateway A", "gateway B", "redis")


def _redis_call(port: int, command: bytes) -> bytes:
    """One inline command; a simple reply (``+PONG``) or a bulk string (``INFO``) read whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(command)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
        if not data.startswith(b"$"):
            return data
        head = data.index(b"\r\n")
        size = int(data[1:head])
        while len(data) < head + 2 + size:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data[head + 2 : head + 2 + size]


class RedisServer:
    """A private ``redis-server`` pinned to the server core, nothing on disk, own pid."""

    def __init__(self, label: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.dir = LOGS / f"{label}-redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            pinned(
                SERVER_CPU,
                [
                    *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.dir)),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if _redis_call(self.port, b"PING\r\n").startswith(b"+PONG"):
                    break
            except OSError:
                time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError("redis-server did not start")
        info = _redis_call(self.port, b"INFO server\r\n").decode()
        self.pid = int(info.split("process_id:", 1)[1].split()[0])
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cpu_s(self) -> float:
        """used_cpu_user + used_cpu_sys of ``INFO cpu`` (µs resolution, vs 10 ms in /proc)."""
        info = _redis_call(self.port, b"INFO cpu\r\n").decode()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])

    def stop(self) -> None:
        terminate(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _node_config(label: str, node: int, redis_url: str | None, prefix: str) -> Path:
    """The bench config's websocket API alone, with the Redis broker when given."""
    base = yaml.safe_load((HERE / "sockway-bench.yaml").read_text())
    config: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "state_dir": str(HERE / "results" / ".sockway" / f"node{node}"),
        "log_level": "WARNING",
        "apis": [{**base["apis"][0], "code_dir": str(HERE / "handlers")}],
    }
    if redis_url:
        config["broker"] = {"url": redis_url, "key_prefix": prefix}
    path = LOGS / f"{label}-node{node}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _gateway(label: str, node: int, config: Path) -> Server:
    cmd = [PY, "-m", "sockway", "serve", "--config", str(config), "--port", "{port}"]
    src = os.environ.get("SOCKWAY_BENCH_SRC", str(REPO / "src"))  # another checkout's src/
    system = System(f"node-{'AB'[node]}", cmd, "listening", env={"PYTHONPATH": src})
    return Server(system, f"{label}-node{'AB'[node]}")


def trial(name: str, p: Any, n: int, label: str) -> dict[str, Any]:
    layout = CONFIGS[name]
    LOGS.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(label) if layout.redis else None
    nodes: list[Server] = []
    loads: list[Load] = []
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"  # one per trial, shared by its nodes
        for k in range(layout.nodes):
            nodes.append(_gateway(label, k, _node_config(label, k, redis and redis.url, prefix)))
        rate = p.cluster_msgs_per_s / n
        count = max(5, int(rate * p.cluster_s))
        subs = [
            Load(
                "subs",
                "--url",
                nodes[node].url + "/bench?channel=fan",
                "--n",
                k,
                "--expect",
                count,
                "--quiet",
                5,
                "--linger",
                0.5,
                "--max-time",
                p.timeout_s,
            )
            for node, k in zip(layout.sub_nodes, split(n, 2), strict=True)
        ]
        loads += subs
        ready = [s.ready() for s in subs]
        time.sleep(0.5)  # node B's broker subscription of the channel
        meter = CpuMeter()
        for k, srv in enumerate(nodes):
            meter.track(ROLES[k], srv.pid)
        if redis is not None:
            meter.track("redis", redis.pid)
        for s in subs:
            meter.track("client", s.pid)
        redis_cpu0 = redis.cpu_s() if redis is not None else 0.0
        pub = Load(
            "pub",
            "--url",
            nodes[0].url.replace("ws://", "http://"),
            "--http-path",
            "/bench/@channels/fan",
            "--probe-url",
            nodes[layout.probe_node].url + "/bench?channel=fan",
            "--count",
            count,
            "--rate",
            rate,
            "--max-time",
            p.timeout_s,
        )
        loads.append(pub)
        meter.track("client", pub.pid)
        pres = pub.result(p.timeout_s + 30)
        sres = [s.result(p.timeout_s + 30) for s in subs]
        meter.close()
        redis_cpu = redis.cpu_s() - redis_cpu0 if redis is not None else None
        t0 = pres["t_first"]
        t1 = max([r["t_last"] for r in sres] + [pres["t_last"]])
        delivered = sum(r["received"] for r in sres) + pres["probe_seen"]
        lat = [x for r in sres for x in r["lat_ns"]]
        out: dict[str, Any] = {
            "n": n,
            "nodes": layout.nodes,
            "broadcasts": pres["sent"],
            "delivered": delivered,
            "expected": (n + 1) * pres["sent"],
            "connected": sum(r["connected"] for r in ready),
            "msgs_per_s": delivered / max(1e-9, (t1 - t0) / 1e9),
            "p50_ms": percentile(lat, 0.5) / 1e6,
            "p99_ms": percentile(lat, 0.99) / 1e6,
            "publish_errors": pres["http_errors"],
            "client_cpu_pct": meter.percent("client", t0, t1),
        }
        total = 0.0
        for role in ROLES:
            key = role.replace(" ", "_")
            if role in meter.pids:
                cpu = meter.seconds(role, t0, t1)
                total += cpu
                out[f"{key}_cpu_s"] = cpu
                out[f"{key}_us_per_msg"] = cpu * 1e6 / delivered if delivered else float("nan")
                out[f"{key}_us_per_publication"] = cpu * 1e6 / max(1, pres["sent"])
            else:
                out[f"{key}_cpu_s"] = None
                out[f"{key}_us_per_msg"] = None
                out[f"{key}_us_per_publication"] = None
        # redis-server's own account (INFO cpu) from just before the first publication to
        # after the last delivery: finer than /proc's ticks for its small share.
        out["redis_info_cpu_s"] = redis_cpu
        out["redis_us_per_publication"] = (
            redis_cpu * 1e6 / pres["sent"] if redis_cpu is not None and pres["sent"] else None
        )
        out["cpu_s"] = total
        out["cpu_us_per_msg"] = total * 1e6 / delivered if delivered else float("nan")
        return out
    finally:
        for ld in loads:
            if ld.proc.poll() is None:
                ld.proc.kill()
                ld.proc.wait()
        for srv in nodes:
            srv.stop()
        if redis is not None:
            redis.stop()
