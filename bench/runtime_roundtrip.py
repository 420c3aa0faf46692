"""Round trip of a trivial handler, in-process vs process vs nodejs runtime (README "Handler
runtimes").

Starts one gateway (uvloop, 127.0.0.1, ephemeral port) with three identical APIs that differ
only in ``runtime`` (the nodejs one runs the same handler written in JavaScript), then for each
one measures, sequentially over one websockets connection:

- the WebSocket round trip: client sends ``{"action":"echo"}``, a two-way route answers;
- the integration call alone (``Integration.invoke`` with the same event, no socket);
- the cold start: the first invocation after start (process/nodejs: spawn + import, Lambda's
  init);
- the resident memory of one warm worker (process and nodejs runtimes).

Usage: PYTHONPATH=src python bench/runtime_roundtrip.py [--n 2000] [--rounds 3]
Prints medians of the per-round medians/p99s, in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import websockets

from sockway.gateway.config import parse_config
from sockway.gateway.gateway import Gateway
from sockway.runtimes.base import Invocation

HANDLER = "def echo(event, context):\n    return {'statusCode': 200, 'body': event['body']}\n"
JS_HANDLER = "exports.echo = async (event) => ({ statusCode: 200, body: event.body });\n"
RUNTIMES = ("inprocess", "process", "nodejs")


def _config(code: Path, state: Path) -> dict[str, Any]:
    def api(name: str, runtime: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "websocket",
            "stage": name,
            "runtime": runtime,
            "code_dir": str(code),
            "routes": {"echo": {"handler": "bench_echo.echo", "route_response": True}},
        }

    return {
        "listen": "127.0.0.1:0",
        "state_dir": str(state),
        "log_level": "WARNING",
        "nodejs": {"aws_sdk": []},
        "apis": [api(runtime, runtime) for runtime in RUNTIMES],
    }


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def _measure(gw: Gateway, stage: str, n: int) -> dict[str, float]:
    door = next(d for d in gw.front_doors if d.name == stage)
    integration = door.runtime.routes["echo"].integration  # type: ignore[attr-defined]
    event = {"body": '{"action":"echo"}', "requestContext": {"routeKey": "echo"}}
    out: dict[str, float] = {}
    async with websockets.connect(f"ws://127.0.0.1:{gw.port}/{stage}") as ws:
        started = time.perf_counter()
        await ws.send('{"action":"echo"}')
        await ws.recv()
        out["cold_ms"] = (time.perf_counter() - started) * 1000
        for _ in range(200):  # warm up
            await ws.send('{"action":"echo"}')
            await ws.recv()
        rtt = []
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send('{"action":"echo"}')
            await ws.recv()
            rtt.append((time.perf_counter() - t0) * 1e6)
    calls = []
    for i in range(n):
        t0 = time.perf_counter()
        await integration.invoke(event, Invocation(f"bench-{i}", 29))
        calls.append((time.perf_counter() - t0) * 1e6)
    workers = getattr(integration, "_idle", [])
    if workers:  # resident memory of one warm worker (process runtime only)
        status = Path(f"/proc/{workers[0].pid}/status").read_text()
        out["worker_rss_mb"] = int(status.split("VmRSS:")[1].split()[0]) / 1024
    out["rtt_p50_us"] = statistics.median(rtt)
    out["rtt_p99_us"] = _pct(rtt, 0.99)
    out["call_p50_us"] = statistics.median(calls)
    out["call_p99_us"] = _pct(calls, 0.99)
    return out


async def _round(tmp: Path, n: int) -> dict[str, dict[str, float]]:
    gw = Gateway(parse_config(_config(tmp / "code", tmp / "state"), tmp))
    await gw.start()
    try:
        return {stage: await _measure(gw, stage, n) for stage in RUNTIMES}
    finally:
        await gw.stop(grace_s=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="round trips per runtime and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        (tmp / "code").mkdir()
        (tmp / "code" / "bench_echo.py").write_text(HANDLER)
        (tmp / "code" / "bench_echo.js").write_text(JS_HANDLER)
        rounds = [uvloop.run(_round(tmp, args.n)) for _ in range(args.rounds)]
    keys = ("rtt_p50_us", "rtt_p99_us", "call_p50_us", "call_p99_us", "cold_ms", "worker_rss_mb")
    print(f"{'runtime':<10} " + " ".join(f"{k:>12}" for k in keys))
    for runtime in RUNTIMES:
        values = [statistics.median(r[runtime].get(k, 0.0) for r in rounds) for k in keys]
        print(f"{runtime:<10} " + " ".join(f"{v:>12.1f}" for v in values))


if __name__ == "__main__":
    main()
