"""RESULTS.md: the bars of issue 7 as same-run ratios, per-scenario medians, the instruction
counts of ``make bench-instructions`` (``bench/INSTRUCTIONS.md``) and the analysis kept by hand in
``bench/ANALYSIS.md`` (both appended verbatim, so ``make bench`` never loses them)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

PRIMARY = {
    "fanout": "msgs_per_s",
    "paced": "p99_ms",
    "echo": "rps",
    "post": "posts_per_s",
    "idle": "kb_per_conn",
    "connect": "conns_per_s",
    "cluster": "cpu_us_per_msg",
}
COLUMNS = {
    "fanout": (
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "server_cpu_pct",
        "client_cpu_pct",
        "cpu_us_per_msg",
        "delivered",
        "expected",
    ),
    "paced": (
        "p50_ms",
        "p99_ms",
        "msgs_per_s",
        "server_cpu_pct",
        "cpu_us_per_msg",
        "delivered",
        "expected",
    ),
    "echo": (
        "rps",
        "p50_ms",
        "p99_ms",
        "server_cpu_pct",
        "client_cpu_pct",
        "cpu_us_per_msg",
        "gateway_us_per_msg",
        "server_processes",
        "wrong_replies",
    ),
    "post": (
        "posts_per_s",
        "p50_ms",
        "p99_ms",
        "non_200",
        "server_cpu_pct",
        "client_cpu_pct",
        "cpu_us_per_msg",
    ),
    "idle": ("kb_per_conn", "connected", "rss_base_mb", "rss_after_mb", "connect_s"),
    "connect": (
        "conns_per_s",
        "connected",
        "failures",
        "server_cpu_pct",
        "client_cpu_pct",
        "cpu_us_per_conn",
    ),
    "cluster": (
        "cpu_us_per_msg",
        "gateway_A_us_per_msg",
        "gateway_B_us_per_msg",
        "redis_us_per_msg",
        "redis_us_per_publication",
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "client_cpu_pct",
        "delivered",
        "expected",
    ),
}
# (scenario, parameter, reference, bar, higher_is_better, label)
BARS = [
    ("fanout", 1000, "picows", 0.9, True, "fan-out ceiling N=1,000, msgs/s"),
    ("fanout", 1000, "node-ws", 1.5, True, "fan-out ceiling N=1,000, msgs/s"),
    ("fanout", 5000, "picows", 0.9, True, "fan-out ceiling N=5,000, msgs/s"),
    ("fanout", 5000, "node-ws", 1.5, True, "fan-out ceiling N=5,000, msgs/s"),
    ("paced", 1000, "picows", 1.2, False, "fan-out p99 at 20k msgs/s, N=1,000"),
    ("echo", 100, "picows", 0.5, True, "two-way route round trip, 100 clients, req/s"),
    ("post", 16, "aiohttp-hello", 0.5, True, "@connections POST, 16 keep-alive clients, posts/s"),
    ("idle", 18000, "websockets", 1.0, False, "KB per idle connection (18,000)"),
    ("idle", 2000, "websockets", 1.0, False, "KB per idle connection (2,000)"),
    ("connect", 3000, "picows", 0.7, True, "connect rate with $connect handler, conns/s"),
    ("connect", 1000, "picows", 0.7, True, "connect rate with $connect handler, conns/s"),
]
# Rows the issue asks to report without a bar: (scenario, parameter, system, reference, label).
REPORTED = [
    (
        "echo",
        100,
        "sockway-process",
        "picows",
        "the same, handler in worker processes (`runtime: process`), req/s",
    ),
]


# The gateway's front doors (systems of bench/run.py), in the order the bars table shows them.
API_LABEL = {
    "sockway": "websocket API",
    "sockway-events": "AppSync Events",
    "sockway-pusher": "Pusher",
}


def _median(rows: list[dict[str, Any]], scen: str, prm: int, system: str, key: str) -> float:
    vals = [
        r["result"][key]
        for r in rows
        if r["scenario"] == scen
        and r["param"] == prm
        and r["system"] == system
        and "result" in r
        and r["result"].get(key) is not None
        and not (isinstance(r["result"][key], float) and math.isnan(r["result"][key]))
    ]
    return statistics.median(vals) if vals else float("nan")


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def bar_table(rows: list[dict[str, Any]], plan: list[tuple[str, int, list[str]]]) -> str:
    """One line per bar and front door: every API in a row of the plan is held to the bar."""
    systems = {(s, p): names for s, p, names in plan}
    lines = [
        "| scenario | front door | sockway | reference | ratio | bar | met "
        "| server CPU µs per op, ours / ref |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scen, prm, ref, bar, higher, label in BARS:
        if (scen, prm) not in systems:
            continue
        key = PRIMARY[scen]
        theirs = _median(rows, scen, prm, ref, key)
        for gw in [n for n in systems[scen, prm] if n in API_LABEL] or ["sockway"]:
            ours = _median(rows, scen, prm, gw, key)
            ratio = ours / theirs if theirs and not math.isnan(theirs) else float("nan")
            met = (
                "-"
                if math.isnan(ratio)
                else ("yes" if (ratio >= bar if higher else ratio <= bar) else "**no**")
            )
            sign = "≥" if higher else "≤"
            door = API_LABEL[gw]
            lines.append(
                f"| {label} | {door} | {_fmt(ours)} | {ref} {_fmt(theirs)} | {_times(ratio)} | "
                f"{sign} {bar}x | {met} | {_cpu(rows, scen, prm, gw, ref)} |"
            )
    for scen, prm, system, ref, label in REPORTED:
        if system not in systems.get((scen, prm), ()):
            continue
        key = PRIMARY[scen]
        ours, theirs = _median(rows, scen, prm, system, key), _median(rows, scen, prm, ref, key)
        ratio = ours / theirs if theirs and not math.isnan(theirs) else float("nan")
        lines.append(
            f"| {label} | websocket API | {_fmt(ours)} | {ref} {_fmt(theirs)} | {_times(ratio)} | "
            f"report | - | {_cpu(rows, scen, prm, system, ref)} |"
        )
    return "\n".join(lines)


def _times(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}x"


def _cpu(rows: list[dict[str, Any]], scen: str, prm: int, ours: str, ref: str) -> str:
    """ "ours / ref = ratio" of the server CPU µs per operation, or "-"."""
    cpu_key = "cpu_us_per_conn" if scen == "connect" else "cpu_us_per_msg"
    cpu_ours = _median(rows, scen, prm, ours, cpu_key)
    cpu_ref = _median(rows, scen, prm, ref, cpu_key)
    if not cpu_ref or math.isnan(cpu_ref) or math.isnan(cpu_ours):
        return "-"
    return f"{_fmt(cpu_ours)} / {_fmt(cpu_ref)} = {cpu_ours / cpu_ref:.2f}x"


def detail(rows: list[dict[str, Any]], plan: list[tuple[str, int, list[str]]]) -> str:
    out = []
    for scen, prm, systems in plan:
        if scen == "cluster":
            continue
        cols = COLUMNS[scen]
        key = PRIMARY[scen]
        base = _median(rows, scen, prm, systems[0], key)
        out.append(f"\n### {scen} ({prm}) — medians; ratio = {key} of sockway / the row's\n")
        out.append("| system | runs (" + key + ") | " + " | ".join(cols) + " | sockway ÷ this |")
        out.append("|---" * (len(cols) + 3) + "|")
        for name in systems:
            mine = [
                r
                for r in rows
                if r["scenario"] == scen and r["param"] == prm and r["system"] == name
            ]
            runs = ", ".join(_fmt(r["result"][key]) if "result" in r else "error" for r in mine)
            cells = [_fmt(_median(rows, scen, prm, name, c)) for c in cols]
            v = _median(rows, scen, prm, name, key)
            ratio = f"{base / v:.2f}x" if v and not math.isnan(v) else "-"
            out.append(f"| {name} | {runs} | " + " | ".join(cells) + f" | {ratio} |")
        errors = [r for r in rows if r["scenario"] == scen and r["param"] == prm and "error" in r]
        for r in errors:
            out.append(f"\nerror: run {r['run']} {r['system']}: {r['error']}")
    return "\n".join(out)


def _part(v: float, base: float) -> str:
    """A process's µs per message, with its ratio to the reference configuration's total."""
    if math.isnan(v):
        return "-"
    return f"{v:.2f} ({v / base:.2f}x)" if base and not math.isnan(base) else f"{v:.2f}"


def cluster_table(rows: list[dict[str, Any]], plan: list[tuple[str, int, list[str]]]) -> str:
    """Issue 6: µs of CPU per delivered message of each configuration, total and per process,
    as ratios to the first configuration (one node, embedded memory broker)."""
    out = []
    for scen, prm, systems in plan:
        if scen != "cluster":
            continue
        base = _median(rows, scen, prm, systems[0], "cpu_us_per_msg")
        out.append(
            "| configuration | runs (µs/msg) | µs CPU per delivered msg, all processes "
            "| ratio to " + systems[0] + " | gateway A | gateway B | redis-server "
            "| redis-server CPU µs per publication (INFO cpu, with its background work) "
            "| delivered msgs/s | p50 / p99 ms | delivered / expected |"
        )
        out.append("|---" * 11 + "|")
        for name in systems:
            mine = [r for r in rows if r["scenario"] == scen and r["system"] == name]
            runs = ", ".join(
                _fmt(r["result"]["cpu_us_per_msg"]) if "result" in r else "error" for r in mine
            )

            total = _median(rows, scen, prm, name, "cpu_us_per_msg")
            ok = base and not math.isnan(base) and not math.isnan(total)
            ratio = f"{total / base:.2f}x" if ok else "-"
            cells = [
                _part(_median(rows, scen, prm, name, f"{role}_us_per_msg"), base)
                for role in ("gateway_A", "gateway_B", "redis")
            ]
            per_pub, p50, p99, rate, got, want = (
                _fmt(_median(rows, scen, prm, name, k))
                for k in (
                    "redis_us_per_publication",
                    "p50_ms",
                    "p99_ms",
                    "msgs_per_s",
                    "delivered",
                    "expected",
                )
            )
            out.append(
                f"| {name} | {runs} | {_fmt(total)} | {ratio} | " + " | ".join(cells) + " | "
                f"{per_pub} | {rate} | {p50} / {p99} | {got} / {want} |"
            )
        for r in rows:
            if r["scenario"] == scen and "error" in r:
                out.append(f"\nerror: run {r['run']} {r['system']}: {r['error']}")
    return "\n".join(out)


def render(
    meta: dict[str, Any],
    rows: list[dict[str, Any]],
    plan: list[tuple[str, int, list[str]]],
    quick: bool,
) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    head = [
        "# sockway benchmark results"
        + (" (quick smoke run: not the figures of record)" if quick else ""),
        "",
        f"Produced by `make bench{'-quick' if quick else ''}` (`{meta['command']}`) on "
        f"{meta['date']}; {meta['cpus']} CPUs, open-files limit {meta['nofile']}; "
        f"{meta['runs']} run(s) per trial, medians shown.",
        "",
        f"Versions: {versions}.",
        "",
        *(
            [
                f"Wall time {meta['seconds'] / 60:.1f} min. Load average (1/5/15 min) "
                f"{' '.join(meta['loadavg_start'])} at the start, "
                f"{' '.join(meta['loadavg_end'])} at the end: above ~1 the 2-CPU machine "
                "was shared with other work during the run (rates suffer first; CPU per "
                "operation much less).",
                "",
            ]
            if "loadavg_end" in meta
            else []
        ),
        *(
            [
                "Rows run fewer times than the others (their figure does not move between "
                "runs, or they have no bar), to keep `make bench` under 15 minutes: "
                + "; ".join(meta["runs_cap"])
                + " run(s).",
                "",
            ]
            if meta.get("runs_cap") and not quick
            else []
        ),
        "Each trial starts a fresh server pinned to CPU 0 (`taskset`); load generators are "
        "separate processes (picows clients on uvloop) pinned to CPU 1; loopback only. "
        "sockway = `sockway serve --config bench/sockway-bench.yaml` (one worker, serving the "
        "three APIs of that file). Fan-out goes through each front door's own path, from a "
        "keep-alive HTTP client: `sockway` = websocket API, published by "
        "`POST /bench/@channels/fan`, subscribers joined by an in-process async `$connect` "
        "handler; `sockway-events` = AppSync Events, published by `POST /event` (one event "
        "per request, `x-api-key`), subscribers on `/event/realtime` with the "
        "`aws-appsync-event-ws` subprotocol, `connection_init` + `subscribe` (API key); "
        "`sockway-pusher` = Pusher, published by the HTTP API `POST /apps/4242/events` signed "
        "as the pusher SDKs sign (HMAC-SHA256, computed per request by the load generator), "
        "subscribers speak protocol 7 `pusher:subscribe`. The message is the same 100 bytes "
        "for every system; AppSync Events delivers it as a JSON string inside its `data` frame, "
        "Pusher as the `data` of an event frame (each ~40 bytes of envelope per frame). "
        "References publish over their own `/pub` WebSocket. Two-way round trip: 100 "
        'closed-loop clients send `{"action":"echo",…}` (100 bytes) and wait for it back '
        "(every reply is checked byte for byte: `wrong_replies`); `sockway` runs the route's "
        "handler in-process (`async def`), `sockway-sync` the same as a plain `def` (thread "
        "pool), `sockway-process` in worker processes (`runtime: process`, one per concurrent "
        "invocation: 100 warm workers after a 12 s warm-up). `aiohttp-ws` is aiohttp's own "
        "WebSocket server with nothing else (echo, and accept-only for the connect rate): the "
        "ceiling of sockway's transport.",
        "",
        "## The bars (issue 7)",
        "",
        bar_table(rows, plan),
        "",
        "## Every scenario",
        detail(rows, plan),
        "",
        *(
            [
                "## Cost of cross-node delivery (issue 6)",
                "",
                f"`bench/cluster.py`, run by the same command (`{meta['command']}`): 1,000 "
                "websocket-API subscribers of one channel, publications by "
                "`POST /bench/@channels/fan` on node A at "
                f"{meta['params'].get('cluster_msgs_per_s', 0):,} delivered msgs/s for "
                f"{meta['params'].get('cluster_s', 0)} s. CPU = utime + stime of each process "
                "over the measured window ÷ messages delivered (the publisher's probe "
                "subscriber included). Gateways and the private redis-server started for each "
                "trial are pinned to CPU 0 (**the two gateways of a two-node configuration "
                "share that core**); load generators to CPU 1. Per-process cells: µs per "
                "delivered message (ratio to the total of the first configuration).",
                "",
                cluster_table(rows, plan),
                "",
            ]
            if any(s == "cluster" for s, _, _ in plan)
            else []
        ),
        "Columns: `server_cpu_pct`/`client_cpu_pct` over the measured window (100 = one core; "
        "a server well under 100 % with the client near 100 % means the load generator is the "
        "limit and the server's figure is a lower bound); `cpu_us_per_msg` = server CPU µs "
        "per delivered message / request — the figure least affected by the load generator; "
        "it includes the gateway's child processes (handler workers), and "
        "`gateway_us_per_msg` is the gateway process alone (`server_processes`: how many).",
    ]
    # The instruction counts (issue 18) are a separate, slower-to-change run
    # (``make bench-instructions``): its latest figures are carried into every RESULTS.md,
    # each section with the command and date that produced it.
    for extra in (HERE / "INSTRUCTIONS.md", HERE / "ANALYSIS.md"):
        if extra.exists():
            head += ["", extra.read_text().rstrip()]
    return "\n".join(head) + "\n"
