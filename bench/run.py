"""sockway's benchmark (issue 7): the gateway against raw servers started in the same run.

    make bench          # full: up to 3 runs per row (8-12 min on 2 cores) -> bench/RESULTS.md
    make bench-quick    # smoke: 1 short run (~2.5 min) -> bench/results/RESULTS-quick.md

The gateway is ``sockway serve --config bench/sockway-bench.yaml`` (handlers in
``bench/handlers/``), pinned to CPU 0 like every reference server; load generators
(``loadgen.py``, picows on uvloop) run as separate processes pinned to CPU 1. Every trial
starts a fresh server; runs are interleaved (run 1 of everything, then run 2, ...), and the
report gives medians and same-run ratios. Raw results: ``bench/results/<stamp>.jsonl``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cluster
import harness
import report
import scenarios
from harness import HERE, PY, REPO, Server, System

GATEWAY_ENV = {"PYTHONPATH": str(REPO / "src")}
GATEWAY_CMD = [
    PY,
    "-m",
    "sockway",
    "serve",
    "--config",
    str(HERE / "sockway-bench.yaml"),
    "--port",
    "{port}",
]
REF = [PY, str(HERE / "refservers.py")]

# The three front doors of the gateway (one process serves all three APIs of the bench config),
# each subscribed and published through its own protocol and HTTP publish path, and the raw
# references. The published message is the same 100 bytes everywhere; AppSync Events and Pusher
# wrap it (a JSON string in a ``data`` frame, the ``data`` of a Pusher event), so their
# subscribers find the stamp after the ``@T`` marker and ignore acks and keep-alives.
EVENTS_KEY = "da2-sockwaybenchkey"  # bench/sockway-bench.yaml, API bench-events
_events_auth = (
    base64.urlsafe_b64encode(json.dumps({"host": "127.0.0.1", "x-api-key": EVENTS_KEY}).encode())
    .decode()
    .rstrip("=")
)
EVENTS_SUBSCRIBE = json.dumps(
    {
        "type": "subscribe",
        "id": "fan",
        "channel": "/bench/fan",
        "authorization": {"host": "127.0.0.1", "x-api-key": EVENTS_KEY},
    }
)
PUSHER_SUBSCRIBE = '{"event":"pusher:subscribe","data":{"channel":"fan"}}'
GATEWAYS = ("sockway", "sockway-events", "sockway-pusher")  # rows compared with the bars
SYSTEMS = {
    "sockway": System(
        "sockway",
        GATEWAY_CMD,
        "listening",
        sub_path="/bench?channel=fan",
        plain_path="/bench",
        pub_path=None,
        http_publish="/bench/@channels/fan",
        echo_path="/bench",
        echo_template='{"action":"echo","t":"{}"}',
        env=GATEWAY_ENV,
    ),
    "sockway-events": System(
        "sockway-events",
        GATEWAY_CMD,
        "listening",
        sub_path="/event/realtime",
        plain_path="/event/realtime",
        pub_path=None,
        http_publish="/event",
        subscribe_args=(
            "--header",
            f"Sec-WebSocket-Protocol: aws-appsync-event-ws, header-{_events_auth}",
            "--hello",
            '{"type":"connection_init"}',
            "--hello",
            EVENTS_SUBSCRIBE,
            "--ack-marker",
            "subscribe_success",
            "--stamp-marker",
            "@T",
        ),
        publish_args=(
            "--publish-kind",
            "appsync",
            "--marker",
            "@T",
            "--channel",
            "/bench/fan",
            "--api-key",
            EVENTS_KEY,
        ),
        env=GATEWAY_ENV,
    ),
    "sockway-pusher": System(
        "sockway-pusher",
        GATEWAY_CMD,
        "listening",
        sub_path="/app/bench-key?protocol=7&client=js&version=8.4.0",
        plain_path="/app/bench-key?protocol=7&client=js&version=8.4.0",
        pub_path=None,
        http_publish="/apps/4242/events",
        subscribe_args=(
            "--hello",
            PUSHER_SUBSCRIBE,
            "--ack-marker",
            "pusher_internal:subscription_succeeded",
            "--stamp-marker",
            "@T",
        ),
        publish_args=(
            "--publish-kind",
            "pusher",
            "--marker",
            "@T",
            "--channel",
            "fan",
            "--app-key",
            "bench-key",
            "--secret",
            "bench-secret",
        ),
        env=GATEWAY_ENV,
    ),
    "picows": System("picows", [*REF, "picows", "{port}"], "LISTENING"),
    "node-ws": System("node-ws", ["node", str(HERE / "ref_ws_server.js"), "{port}"], "LISTENING"),
    "websockets": System("websockets", [*REF, "websockets", "{port}"], "LISTENING"),
    "aiohttp-hello": System("aiohttp-hello", [*REF, "aiohttp-hello", "{port}"], "LISTENING"),
    # aiohttp's WebSocket alone (sockway's transport): shows what the library itself reaches.
    "aiohttp-ws": System("aiohttp-ws", [*REF, "aiohttp-ws", "{port}"], "LISTENING"),
}
# Sync (thread-pool) echo handler: what most Lambda code looks like; reported, no bar.
SYSTEMS["sockway-sync"] = replace(
    SYSTEMS["sockway"], name="sockway-sync", echo_template='{"action":"echo_sync","t":"{}"}'
)

# The same sync handler in worker processes (``runtime: process``): reported, no bar (issue 7:
# "report, and explain the gap"). 100 workers start cold in the warm-up (spawn + import each).
SYSTEMS["sockway-process"] = replace(
    SYSTEMS["sockway"],
    name="sockway-process",
    echo_template='{"action":"echo_process","t":"{}"}',
    echo_warmup_s=12.0,
)

SCENARIOS = {
    "fanout": scenarios.fanout,
    "paced": scenarios.paced,
    "echo": scenarios.echo,
    "post": scenarios.post,
    "idle": scenarios.idle,
    "connect": scenarios.connect,
}


def plan(quick: bool) -> list[tuple[str, int, list[str]]]:
    """(scenario, parameter, systems) in run order; the first system is the one under test."""
    fan = [*GATEWAYS, "picows", "node-ws"]
    return [
        ("fanout", 1000, fan),
        *([] if quick else [("fanout", 5000, fan)]),
        ("paced", 1000, ["sockway", "picows"]),
        (
            "echo",
            100,
            ["sockway", "sockway-sync", "sockway-process", "picows", "node-ws", "aiohttp-ws"],
        ),
        ("post", 16, ["sockway", "aiohttp-hello"]),
        ("idle", 2000 if quick else 18000, ["sockway", "websockets", "aiohttp-ws"]),
        ("connect", 1000 if quick else 3000, ["sockway", "picows", "aiohttp-ws"]),
        ("cluster", 1000, list(cluster.CONFIGS)),
    ]


# Fewer runs for rows whose figure does not move between runs or has no bar, to keep the full
# bench under 15 minutes even on a busy machine (issue 18: 17.9 min with the machine shared;
# the per-operation cost that the bars compare is now also counted noise-free by
# ``make bench-instructions``, so the wall-clock rows need fewer repeats):
# - the idle RSS per connection was identical in all three runs of every earlier full bench
#   (16.5/16.5/16.5 KB, 12.3/12.3/12.3 KB); the sync-handler echo row has no bar;
# - Node `ws` (fan-out and echo) and aiohttp's bare server (echo, connect) are context, not the
#   references of issue 18's bars (raw picows is): one run each;
# - fan-out at N=5,000 has the same bar as N=1,000, which keeps 3 runs: 2 runs;
# - the cross-node rows (issue 6: reported, no bar) are CPU per message, which moved little
#   between runs (bench/ANALYSIS.md): 2 runs.
# The worker-process row keeps 3 runs: one run measured 113 µs per request, another 202.
# Keys: (scenario, system) or (scenario, parameter, system).
RUNS_CAP: dict[tuple[Any, ...], int] = {
    ("idle", "sockway"): 1,
    ("idle", "websockets"): 1,
    ("idle", "aiohttp-ws"): 1,
    ("echo", "sockway-sync"): 1,
    ("fanout", "node-ws"): 1,
    ("echo", "node-ws"): 1,
    ("echo", "aiohttp-ws"): 1,
    ("connect", "aiohttp-ws"): 1,
    **{("fanout", 5000, n): 2 for n in ("sockway", "sockway-events", "sockway-pusher", "picows")},
    **{("cluster", n): 2 for n in cluster.CONFIGS},
}


def runs_of(scen: str, prm: int, name: str, runs: int) -> int:
    return min(runs, RUNS_CAP.get((scen, prm, name), RUNS_CAP.get((scen, name), runs)))


QUICK = scenarios.Params(
    fanout_deliveries=200_000,
    paced_s=2.0,
    echo_s=2.0,
    post_s=2.0,
    connect_n=1000,
    timeout_s=60,
    cluster_s=3.0,
)

# Rough seconds per trial (process start-up included), for the progress display's ETA.
COST = {"fanout": 15, "paced": 9, "echo": 7, "post": 7, "idle": 25, "connect": 6, "cluster": 16}


def versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for pkg in ("sockway", "aiohttp", "picows", "aiofastnet", "uvloop", "websockets", "orjson"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    try:
        import subprocess

        out["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        ws = json.loads((REPO / "node_modules/ws/package.json").read_text())
        out["node ws"] = ws["version"]
    except (OSError, ValueError, KeyError):
        pass
    return out


class Progress:
    """One line per trial: position, elapsed, ETA, and the trial's headline figure."""

    def __init__(self, trials: list[tuple[int, str, int, str]]) -> None:
        self.left = sum(COST[s] for _, s, _, _ in trials)
        self.total = len(trials)
        self.done = 0
        self.start = time.monotonic()

    def begin(self, run: int, scen: str, prm: int, name: str) -> None:
        el = time.monotonic() - self.start
        sys.stdout.write(
            f"[{self.done + 1:>2}/{self.total}] {el:5.0f}s  eta ~{self.left:4.0f}s  "
            f"run {run} {scen:7} {prm:>6} {name:15} "
        )
        sys.stdout.flush()

    def end(self, scen: str, row: dict[str, Any]) -> None:
        self.done += 1
        self.left = max(0, self.left - COST[scen])
        res = row.get("result")
        if res is None:
            print(f"ERROR {row.get('error')}", flush=True)
            return
        key = report.PRIMARY[scen]
        extra = f"  server cpu {res['server_cpu_pct']:.0f}%" if "server_cpu_pct" in res else ""
        print(f"{key} {res[key]:,.1f}{extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 short run: a smoke test (~2 min)")
    ap.add_argument("--runs", type=int, help="runs per trial (default 3, quick 1)")
    ap.add_argument("--only", help="comma list of scenarios to run")
    ap.add_argument("--render", metavar="JSONL", help="only re-render the report of a raw file")
    ap.add_argument("--systems", help="comma list: only these servers (e.g. sockway)")
    ap.add_argument(
        "--baseline-src",
        help="also run every gateway row as '<system>-base' from this src/ directory "
        "(an older checkout) to record what an optimisation bought",
    )
    ap.add_argument("--out", help="report file (default bench/RESULTS.md, quick: results/)")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    params = QUICK if args.quick else scenarios.Params()
    rows_plan = [
        (s, prm, [n for n in names if not args.systems or n in args.systems.split(",")])
        for s, prm, names in plan(args.quick)
        if not args.only or s in args.only.split(",")
    ]
    rows_plan = [row for row in rows_plan if row[2]]  # --systems left no system in this row
    if args.baseline_src:
        for name in [n for n in SYSTEMS if n.startswith("sockway")]:
            SYSTEMS[f"{name}-base"] = replace(
                SYSTEMS[name], name=f"{name}-base", env={"PYTHONPATH": args.baseline_src}
            )
        rows_plan = [  # the cross-node rows start their own gateways: no baseline there
            (
                s,
                p,
                names
                if s == "cluster"
                else [*names, *(f"{n}-base" for n in names if n.startswith("sockway"))],
            )
            for s, p, names in rows_plan
        ]
    if args.render:
        lines = [json.loads(x) for x in Path(args.render).read_text().splitlines() if x.strip()]
        meta, rows = lines[0]["meta"], lines[1:]
        done = {(r["scenario"], r["param"]) for r in rows}
        rows_plan = [r for r in rows_plan if (r[0], r[1]) in done]
    out = (
        Path(args.out)
        if args.out
        else (HERE / "results" / "RESULTS-quick.md" if args.quick else HERE / "RESULTS.md")
    )

    if args.render:
        out.write_text(report.render(meta, rows, rows_plan, quick=args.quick))
        print(report.bar_table(rows, rows_plan))
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by every child
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {harness.CLIENT_CPU})  # keep the orchestrator off the server core
    (HERE / "results").mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {
        "command": "python bench/run.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": versions(),
        "cpus": os.cpu_count(),
        "nofile": hard,
        "runs": runs,
        "params": params.__dict__,
        "runs_cap": [" ".join(map(str, key)) + f": {k}" for key, k in RUNS_CAP.items()],
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    # Each row's systems run in turn, in reverse order every other run: the system that runs
    # right after another measured faster on fan-out (the same two checkouts: 4.56 vs 6.59 µs
    # per message with one second, 4.27 vs 5.26 with the other; bench/ANALYSIS.md).
    trials = [
        (run, s, prm, name)
        for run in range(1, runs + 1)
        for s, prm, names in rows_plan
        for name in (names if run % 2 else names[::-1])
        if run <= runs_of(s, prm, name, runs)
    ]
    progress = Progress(trials)
    print(f"sockway bench: {len(trials)} trials, {runs} run(s); raw: results/{stamp}.jsonl")
    rows: list[dict[str, Any]] = []
    with open(HERE / "results" / f"{stamp}.jsonl", "w") as raw:
        raw.write(json.dumps({"meta": meta}) + "\n")
        for run, scen, prm, name in trials:
            progress.begin(run, scen, prm, name)
            row: dict[str, Any] = {"run": run, "scenario": scen, "param": prm, "system": name}
            srv = None
            label = f"{stamp}-{scen}-{prm}-{name}-{run}"
            try:
                if scen == "cluster":  # starts its own gateways and redis-server
                    row["result"] = cluster.trial(name, params, prm, label)
                else:
                    srv = Server(SYSTEMS[name], label)
                    time.sleep(0.3)
                    row["result"] = SCENARIOS[scen](srv, params, prm)
            except Exception as exc:
                row["error"] = repr(exc)
            finally:
                if srv is not None:
                    srv.stop()
            rows.append(row)
            raw.write(json.dumps(row) + "\n")
            raw.flush()
            progress.end(scen, row)
            time.sleep(0.3)
    meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["seconds"] = round(time.monotonic() - progress.start)
    raw_path = HERE / "results" / f"{stamp}.jsonl"
    lines = raw_path.read_text().splitlines()
    raw_path.write_text("\n".join([json.dumps({"meta": meta}), *lines[1:]]) + "\n")
    text = report.render(meta, rows, rows_plan, quick=args.quick)
    out.write_text(text)
    print(f"\nwrote {out} in {time.monotonic() - progress.start:.0f} s")
    print(report.bar_table(rows, rows_plan))


if __name__ == "__main__":
    main()
