"""The scenarios of issue 7, each run against one fresh server; each returns a flat dict.

Every figure that needs the server's CPU is read from ``/proc`` over the measured window only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from harness import CpuMeter, Load, Server, descendants, percentile, rss_kb, split


@dataclass(frozen=True)
class Params:
    fanout_deliveries: int = 400_000
    window: int = 8
    paced_msgs_per_s: int = 20_000
    paced_s: float = 4.0
    echo_c: int = 100
    echo_s: float = 4.0
    post_c: int = 16
    post_s: float = 4.0
    connect_n: int = 3_000
    client_procs: int = 2
    timeout_s: float = 90.0
    cluster_msgs_per_s: int = 20_000  # delivered per second, cross-node cost (bench/cluster.py)
    cluster_s: float = 5.0


def _sub_url(srv: Server) -> str:
    return srv.url + srv.system.sub_path


def _plain_url(srv: Server) -> str:
    return srv.url + srv.system.plain_path


def fanout(srv: Server, p: Params, n: int, rate: float = 0, count: int = 0) -> dict[str, Any]:
    """N subscribers; one publisher closed loop (<= window broadcasts unseen by a probe)
    or at a fixed rate. The gateway publishes by HTTP POST, the references over /pub."""
    m = count or max(10, p.fanout_deliveries // n)
    sysm = srv.system
    subs = [
        Load(
            "subs",
            "--url",
            _sub_url(srv),
            "--n",
            k,
            "--expect",
            m,
            "--quiet",
            5,
            "--max-time",
            p.timeout_s,
            *sysm.subscribe_args,
        )
        for k in split(n, p.client_procs)
    ]
    ready = [s.ready() for s in subs]
    time.sleep(0.3)
    meter = CpuMeter()
    meter.track("server", srv.pid)
    for s in subs:
        meter.track("client", s.pid)
    args: list[Any] = [
        "--probe-url",
        _sub_url(srv),
        *sysm.subscribe_args,
        "--count",
        m,
        "--window",
        p.window,
        "--rate",
        rate,
        "--max-time",
        p.timeout_s,
    ]
    if sysm.http_publish:
        args += ["--url", srv.url.replace("ws://", "http://"), "--http-path", sysm.http_publish]
        args += sysm.publish_args
    else:
        args += ["--url", srv.url + (sysm.pub_path or "/pub")]
    pub = Load("pub", *args)
    meter.track("client", pub.pid)
    pres = pub.result(p.timeout_s + 30)
    rss = rss_kb(srv.pid)
    sres = [s.result(p.timeout_s + 30) for s in subs]
    meter.close()
    delivered = sum(r["received"] for r in sres)
    t_last = max(r["t_last"] for r in sres) or pres["t_last"]
    span = max(1e-9, (t_last - pres["t_first"]) / 1e9)
    lat = [x for r in sres for x in r["lat_ns"]]
    server_cpu = meter.percent("server", pres["t_first"], t_last)
    rate_out = delivered / span
    return {
        "n": n,
        "broadcasts": pres["sent"],
        "delivered": delivered,
        "expected": n * pres["sent"],
        "connected": sum(r["connected"] for r in ready),
        "msgs_per_s": rate_out,
        "p50_ms": percentile(lat, 0.5) / 1e6,
        "p99_ms": percentile(lat, 0.99) / 1e6,
        "server_cpu_pct": server_cpu,
        "client_cpu_pct": meter.percent("client", pres["t_first"], t_last),
        "cpu_us_per_msg": server_cpu * 1e4 / rate_out if rate_out else float("nan"),
        "server_rss_mb": rss / 1024,
        "publish_errors": pres["http_errors"],
        "stalled": pres["stalled"],
    }


def paced(srv: Server, p: Params, n: int) -> dict[str, Any]:
    """Fixed delivered load (``paced_msgs_per_s``): latency without queueing."""
    rate = p.paced_msgs_per_s / n
    result = fanout(srv, p, n, rate=rate, count=max(5, int(rate * p.paced_s)))
    result["target_msgs_per_s"] = p.paced_msgs_per_s
    return result


def echo(srv: Server, p: Params, c: int) -> dict[str, Any]:
    """C closed-loop clients, one message outstanding each."""
    meter = CpuMeter()
    meter.track("server", srv.pid)
    meter.track("gateway", srv.pid, tree=False)  # without its handler worker processes
    load = Load(
        "echo",
        "--url",
        srv.url + srv.system.echo_path,
        "--n",
        c,
        "--duration",
        p.echo_s,
        "--warmup",
        srv.system.echo_warmup_s,
        "--template",
        srv.system.echo_template,
    )
    meter.track("client", load.pid)
    r = load.result(srv.system.echo_warmup_s + p.echo_s + 180)  # + the wait for every client
    workers = len(descendants(srv.pid)) - 1
    meter.close()
    rps = r["count"] / ((r["t1"] - r["t0"]) / 1e9)
    cpu = meter.percent("server", r["t0"], r["t1"])
    return {
        "c": c,
        "connected": r["connected"],
        "rps": rps,
        "p50_ms": percentile(r["lat_ns"], 0.5) / 1e6,
        "p99_ms": percentile(r["lat_ns"], 0.99) / 1e6,
        "server_cpu_pct": cpu,
        "client_cpu_pct": meter.percent("client", r["t0"], r["t1"]),
        "cpu_us_per_msg": cpu * 1e4 / rps if rps else float("nan"),
        "gateway_us_per_msg": meter.percent("gateway", r["t0"], r["t1"]) * 1e4 / rps
        if rps
        else float("nan"),
        "server_processes": 1 + workers,
        "wrong_replies": r["wrong"],
    }


def post(srv: Server, p: Params, c: int) -> dict[str, Any]:
    """C keep-alive HTTP connections POSTing 100-byte bodies, one request outstanding each.
    Against the gateway: ``@connections/{id}`` of 10 live WebSocket sinks."""
    http = srv.url.replace("ws://", "http://")
    args: list[Any] = ["--url", http, "--n", c, "--duration", p.post_s, "--warmup", 1.0]
    if srv.system.http_publish:  # the gateway
        args += ["--ws-url", _plain_url(srv), "--http-path", "/bench/@connections/{id}"]
    else:
        args += ["--http-path", "/hello"]
    meter = CpuMeter()
    meter.track("server", srv.pid)
    load = Load("post", *args)
    meter.track("client", load.pid)
    r = load.result(p.post_s + 60)
    meter.close()
    rate = r["count"] / ((r["t1"] - r["t0"]) / 1e9)
    cpu = meter.percent("server", r["t0"], r["t1"])
    return {
        "c": c,
        "posts_per_s": rate,
        "non_200": r["non_200"],
        "p50_ms": percentile(r["lat_ns"], 0.5) / 1e6,
        "p99_ms": percentile(r["lat_ns"], 0.99) / 1e6,
        "server_cpu_pct": cpu,
        "client_cpu_pct": meter.percent("client", r["t0"], r["t1"]),
        "cpu_us_per_msg": cpu * 1e4 / rate if rate else float("nan"),
    }


def idle(srv: Server, p: Params, n: int) -> dict[str, Any]:
    """RSS growth per idle connection: 20 warm-up connections, then N held over processes of at
    most 9,000 connections each (distinct source addresses)."""
    url = _plain_url(srv)
    warm = Load("idle", "--url", url, "--n", 20, "--hold", 30)
    warm.ready(60)
    warm.tell("done")
    warm.result(30)
    time.sleep(1.0)
    base = rss_kb(srv.pid)
    loads = [
        Load("idle", "--url", url, "--n", k, "--hold", p.timeout_s)
        for k in split(n, max(p.client_procs, -(-n // 9000)))
    ]
    t0 = time.monotonic()
    ready = [ld.ready(p.timeout_s) for ld in loads]
    connect_s = time.monotonic() - t0
    time.sleep(2.0)
    after = rss_kb(srv.pid)
    connected = sum(r["connected"] for r in ready)
    for ld in loads:
        ld.tell("done")
    for ld in loads:
        ld.result(60)
    return {
        "n": n,
        "connected": connected,
        "failures": sum(r["failures"] for r in ready),
        "rss_base_mb": base / 1024,
        "rss_after_mb": after / 1024,
        "kb_per_conn": (after - base) / max(1, connected),
        "connect_s": connect_s,
    }


def connect(srv: Server, p: Params, n: int) -> dict[str, Any]:
    """N new connections from ``client_procs`` processes (100 handshakes in flight each),
    started together; rate = N / (last open - first attempt). Closed right after."""
    meter = CpuMeter()
    meter.track("server", srv.pid)
    loads = [
        Load("connect", "--url", _plain_url(srv), "--n", k, "--concurrency", 100)
        for k in split(n, p.client_procs)
    ]
    for ld in loads:
        meter.track("client", ld.pid)
        ld.ready(60)
    for ld in loads:
        ld.tell("go")
    res = [ld.result(p.timeout_s) for ld in loads]
    meter.close()
    t0, t1 = min(r["t0"] for r in res), max(r["t1"] for r in res)
    connected = sum(r["connected"] for r in res)
    rate = connected / ((t1 - t0) / 1e9)
    cpu = meter.percent("server", t0, t1)
    return {
        "n": n,
        "connected": connected,
        "failures": sum(r["failures"] for r in res),
        "conns_per_s": rate,
        "server_cpu_pct": cpu,
        "client_cpu_pct": meter.percent("client", t0, t1),
        "cpu_us_per_conn": cpu * 1e4 / rate if rate else float("nan"),
    }
