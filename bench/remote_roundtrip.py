"""Round trip through an HTTP endpoint and a Lambda Invoke API vs in-process (README "Handler
runtimes: HTTP endpoints and AWS Lambda").

One gateway (uvloop, 127.0.0.1) serves three identical two-way ``echo`` routes that differ only
in the handler reference: ``module.function`` (in-process), ``http://…`` (an aiohttp endpoint
that verifies ``X-Sockway-Signature``) and ``lambda:echo`` (a local server speaking the Invoke
API's wire format that verifies SigV4 — ``tests/e2e/fake_lambda.py``). The endpoint and the
fake Lambda run in a child process, as a handler service would. For each runtime, sequentially
over one websockets connection: the WebSocket round trip (client send → route → answer frame).

The Lambda figure is sockway's and botocore's own cost against a local server; on AWS add the
network to the region and Lambda's invoke latency.

Usage: PYTHONPATH=src:. python bench/remote_roundtrip.py [--n 1000] [--rounds 3]
Prints medians of the per-round p50/p99, in microseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
import websockets

SECRET = "bench-secret"
ACCESS_KEY, SECRET_KEY = "AKIDBENCH", "bench-secret-key"
HANDLER = "def echo(event, context):\n    return {'statusCode': 200, 'body': event['body']}\n"
RUNTIMES = ("inprocess", "http", "lambda")


def _serve_handlers(ports: Any) -> None:
    """Child process: the HTTP endpoint and the fake Lambda on ephemeral ports."""
    import asyncio

    import orjson
    from aiohttp import web

    from tests.e2e.fake_lambda import FakeLambda

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        fields = dict(p.split("=", 1) for p in request.headers["X-Sockway-Signature"].split(","))
        mac = hmac.new(SECRET.encode(), fields["t"].encode() + b"." + body, hashlib.sha256)
        if not hmac.compare_digest(mac.hexdigest(), fields["v1"]):
            return web.Response(status=401)
        event = orjson.loads(body)
        return web.Response(
            body=orjson.dumps({"statusCode": 200, "body": event["body"]}),
            content_type="application/json",
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        fake = FakeLambda(
            {"echo": lambda event, context: {"statusCode": 200, "body": event["body"]}},
            {ACCESS_KEY: SECRET_KEY},
        )
        await fake.start()
        ports.put((runner.addresses[0][1], fake.url))
        await asyncio.Event().wait()

    uvloop.run(main())


def _config(code: Path, state: Path, http_port: int, lambda_url: str) -> dict[str, Any]:
    def api(name: str, handler: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "websocket",
            "stage": name,
            "code_dir": str(code),
            "http": {"secret": SECRET},
            "lambda": {"endpoint_url": lambda_url},
            "routes": {"echo": {"handler": handler, "route_response": True}},
        }

    return {
        "listen": "127.0.0.1:0",
        "state_dir": str(state),
        "log_level": "WARNING",
        "apis": [
            api("inprocess", "bench_echo.echo"),
            api("http", f"http://127.0.0.1:{http_port}/echo"),
            api("lambda", "lambda:echo"),
        ],
    }


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def _measure(port: int, stage: str, n: int) -> dict[str, float]:
    async with websockets.connect(f"ws://127.0.0.1:{port}/{stage}") as ws:
        for _ in range(200):  # warm up: connections, botocore client, JIT-free caches
            await ws.send('{"action":"echo"}')
            await ws.recv()
        rtt = []
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send('{"action":"echo"}')
            await ws.recv()
            rtt.append((time.perf_counter() - t0) * 1e6)
    return {"rtt_p50_us": statistics.median(rtt), "rtt_p99_us": _pct(rtt, 0.99)}


async def _round(config: dict[str, Any], base: Path, n: int) -> dict[str, dict[str, float]]:
    from sockway.gateway.config import parse_config
    from sockway.gateway.gateway import Gateway

    gw = Gateway(parse_config(config, base))
    await gw.start()
    try:
        return {stage: await _measure(gw.port, stage, n) for stage in RUNTIMES}
    finally:
        await gw.stop(grace_s=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="round trips per runtime and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    child = ctx.Process(target=_serve_handlers, args=(ports,), daemon=True)
    child.start()
    try:
        http_port, lambda_url = ports.get(timeout=30)
        with tempfile.TemporaryDirectory() as directory:
            tmp = Path(directory)
            (tmp / "code").mkdir()
            (tmp / "code" / "bench_echo.py").write_text(HANDLER)
            config = _config(tmp / "code", tmp / "state", http_port, lambda_url)
            rounds = [uvloop.run(_round(config, tmp, args.n)) for _ in range(args.rounds)]
    finally:
        child.terminate()
        child.join(5)
    keys = ("rtt_p50_us", "rtt_p99_us")
    print(f"{'runtime':<10} " + " ".join(f"{k:>12}" for k in keys))
    for runtime in RUNTIMES:
        values = [statistics.median(r[runtime][k] for r in rounds) for k in keys]
        print(f"{runtime:<10} " + " ".join(f"{v:>12.1f}" for v in values))


if __name__ == "__main__":
    main()
