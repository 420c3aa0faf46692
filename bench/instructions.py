"""Instruction counts of the server process over fixed workloads (issue 18): the noise-free measure.

    make bench-instructions                 # both interpreters -> bench/INSTRUCTIONS.md
    python bench/instructions.py            # this interpreter only
    python bench/instructions.py --only echo --baseline-src /path/to/old/src   # an A/B

Wall-clock rates on this 2-core VM swing up to 2x between trials; the number of instructions
the server executes for the same work does not depend on what else runs. Every trial starts the
server under valgrind's callgrind (``--instr-atstart=no``: start-up and connection set-up run
uninstrumented), brings the clients to a standstill after a warm-up, switches instrumentation
on (``callgrind_control -i on``), runs the measured workload to completion, and dumps the
counters (``callgrind_control -d``) before anything else happens. What is counted is every
user-space instruction of the server process in that window (``Ir``): Python, the event loop,
picows, libc. Kernel work (the syscalls themselves, TCP) is not counted, and it is the same for
every system: the instruction ratio to picows is therefore larger than the CPU-time ratio of
``make bench``, which includes the kernel.

Workloads (the same for sockway and raw picows, ``bench/refservers.py``, in one run):

- ``echo``: 100 connections, 20 warm-up round trips each, then exactly 20,000 two-way requests
  (200 per connection, closed loop, every answer checked byte for byte): instructions per
  request. sockway: the websocket API's ``echo`` route, an in-process ``async def`` handler
  (``bench/sockway-bench.yaml``); picows: its ``/echo``.
- ``process``: the same echo through worker processes (``runtime: process``, route
  ``echo_process``): 10 connections (``--process-clients``: each keeps a worker busy, and each
  worker runs under callgrind too, ``--trace-children=yes``), 20 warm-up round trips each (the
  workers' cold starts), then 2,000 requests (``--process-requests``). The gateway's and the
  workers' instructions are counted apart (every worker switched on and dumped by its pid) and
  reported per request, with their sum, against picows' echo. Under callgrind a cold start
  takes longer than Lambda's 10 s init limit, so this row's gateway runs with a longer one.
- ``fanout``: 1,000 (then 5,000) subscribers, 10 warm-up publications each delivered to all of
  them, then 200 (40) publications, each published once the previous one reached every
  subscriber — 200,000 measured deliveries either way: instructions per delivered message.
  Each front door publishes through its own HTTP path and frames as ``bench/run.py`` does
  (websocket API ``@channels``, AppSync ``POST /event``, Pusher's signed HTTP API); picows
  through its ``/pub`` WebSocket.

Results: one JSON line per trial in ``bench/results/instructions-<stamp>.jsonl`` and this
interpreter's section of ``bench/INSTRUCTIONS.md`` (other interpreters' sections are kept),
which ``make bench`` appends to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness
import uvloop
from harness import HERE, PY, System
from httpload import HttpConn, http_conns, publisher
from picows import WSListener, WSMsgType, ws_connect
from run import SYSTEMS

TEXT, CLOSE = WSMsgType.TEXT, WSMsgType.CLOSE
MARKER = b"@T"
OUT = HERE / "INSTRUCTIONS.md"
FANOUT_SYSTEMS = ["sockway", "sockway-events", "sockway-pusher", "picows"]
ECHO_SYSTEMS = ["sockway", "picows"]
PROCESS_SYSTEMS = ["sockway-process"]  # echo through worker processes; picows: the echo row
# Under callgrind a worker's cold start takes ~3 s alone, and the 10 of the warm-up share one
# core: more than Lambda's 10 s init limit. The process row's gateway runs with a longer one
# (set before ``sockway serve`` starts; nothing else differs).
LONG_INIT = (
    "import runpy, sys; import sockway.runtimes.process as p; p.INIT_TIMEOUT_S = 900.0; "
    "sys.argv[0] = 'sockway'; runpy.run_module('sockway', run_name='__main__')"
)


def _long_init(system: System) -> System:
    """``system`` (``python -m sockway serve …``) with the longer init limit."""
    at = system.cmd.index("-m")
    return replace(system, cmd=[*system.cmd[:at], "-c", LONG_INIT, *system.cmd[at + 2 :]])


DOORS = {"sockway": "websocket API", "sockway-events": "AppSync Events", "sockway-pusher": "Pusher"}
BARS = {"echo": 2.0, "fanout": 1.1}  # issue 18: ratio to picows, per request / per message


class Callgrind:
    """One server process under callgrind, instrumentation off until ``measure_on``."""

    def __init__(self, system: System, label: str, outdir: Path, *, children: bool = False) -> None:
        self.system = system
        self.children = children
        self.port = harness.free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.outdir = outdir
        self.label = label
        harness.LOGS.mkdir(parents=True, exist_ok=True)
        self.log = open(harness.LOGS / f"{label}.log", "w")  # noqa: SIM115 (closed in stop)
        cmd = [c.replace("{port}", str(self.port)) for c in system.cmd]
        vg = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--dump-line=no",
            "--collect-systime=yes",
            f"--callgrind-out-file={outdir}/{label}.%p",
            *(["--trace-children=yes"] if children else []),
        ]
        self.proc = subprocess.Popen(
            harness.pinned(harness.SERVER_CPU, [*vg, *cmd]),
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=HERE,
            env={**os.environ, **system.env},
        )
        deadline = time.monotonic() + 600  # start-up runs on valgrind's JIT, uninstrumented
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if system.ready_marker in line:
                import threading

                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                break
            if not line and self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{system.name} did not start under valgrind ({self.log.name})")
        self.pid = self._tool_pid()

    def _tool_pid(self) -> int:
        """The pid callgrind_control knows (the launcher may fork the tool)."""
        for pid in harness.descendants(self.proc.pid):
            ok = subprocess.run(
                ["callgrind_control", "-s", str(pid)], capture_output=True, text=True
            )
            if ok.returncode == 0 and "Error" not in ok.stdout + ok.stderr:
                return pid
        raise RuntimeError("callgrind_control does not see the server")

    def workers(self) -> list[int]:
        """The server's child processes (``children``: handler workers, each under callgrind)."""
        return [p for p in harness.descendants(self.pid) if p != self.pid]

    def measure_on(self) -> None:
        for pid in [self.pid, *(self.workers() if self.children else [])]:
            self._control("-i", "on", pid=pid)

    def _control(self, *args: str, pid: int | None = None) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(pid or self.pid)], check=True, capture_output=True
        )

    def dump_workers(self) -> dict[str, int]:
        """The summed counters of every child process (dumped one after the other)."""
        total: dict[str, int] = {}
        for pid in self.workers():
            for k, v in self.dump(pid).items():
                total[k] = total.get(k, 0) + v
        return total

    def dump(self, pid: int | None = None) -> dict[str, int]:
        """Dump now; the totals of what ran since instrumentation went on: ``Ir`` and
        ``sysCount`` (syscalls), and ``clock`` of them ``clock_gettime`` (a vDSO call outside
        valgrind, a syscall under it: counted apart, not as kernel work)."""
        base = f"{self.label}.{pid or self.pid}"

        def files() -> set[Path]:
            return {
                p
                for p in self.outdir.glob(base + "*")
                if p.name == base or p.name.startswith(base + ".")
            }

        before = files()
        self._control("-d", pid=pid)
        deadline = time.monotonic() + 60
        seen: dict[Path, str] = {}
        while time.monotonic() < deadline:
            new = [p for p in files() if p not in before]
            for path in new:
                text = path.read_text(errors="replace")
                # callgrind may still be writing the file: only a complete, newline-ended
                # totals line with one value per event is the finished dump.
                events = re.search(r"^events: (.+)\n", text, re.M)
                totals = re.search(r"^totals: ([\d ]+)\n", text, re.M)
                if events and totals:
                    names, values = events.group(1).split(), totals.group(1).split()
                    if len(values) != len(names) and seen.get(path) != text:
                        seen[path] = text  # maybe mid-write: read it again next poll
                        continue
                    # a settled file may omit trailing zero totals (callgrind's format)
                    values += ["0"] * (len(names) - len(values))
                    out = dict(zip(names, map(int, values), strict=True))
                    out["clock"] = _clock_syscalls(path)
                    return out
            time.sleep(0.2)
        raise RuntimeError("callgrind wrote no dump")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # no final dump wanted
            self.proc.wait()
        self.log.close()


def _clock_syscalls(dump: Path) -> int:
    """How many of a dump's syscalls are ``clock_gettime`` (``callgrind_annotate``)."""
    text = subprocess.run(
        ["callgrind_annotate", "--sort=sysCount", "--auto=no", str(dump)],
        capture_output=True,
        text=True,
    ).stdout
    shown = re.search(r"^Events shown:\s+(.+)$", text, re.M)
    if not shown:
        return 0
    at = shown.group(1).split().index("sysCount")
    calls = 0
    for line in text.splitlines():
        if "clock_gettime" in line:  # "181,120 ( 0.07%) 18,112 (81.77%) ..."
            counts = re.findall(r"([\d,]+) \(\s*[\d.]+%\)", line)
            if len(counts) > at:
                calls += int(counts[at].replace(",", ""))
    return calls


def _flag_values(args: tuple[str, ...], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def _message(seq: int, size: int = 100) -> bytes:
    head = MARKER + b"%010d " % seq
    return head + b"x" * max(0, size - len(head))


async def _wait(fut: asyncio.Future[Any], timeout: float, what: str) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except TimeoutError:
        raise RuntimeError(f"timed out waiting for {what}") from None


async def echo_trial(
    srv: Callgrind, clients: int, warmup: int, per_client: int, timeout: float
) -> dict[str, Any]:
    """``clients`` closed loops; warm-up, standstill, then exactly ``clients * per_client``."""
    template = srv.system.echo_template
    prefix, suffix = template.encode().split(b"{}")
    state = {"wrong": 0, "answered": 0}

    class Client(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.t: Any = None
            self.left = 0
            self.done: asyncio.Future[None] | None = None
            self.sent = b""

        def on_ws_connected(self, transport: Any) -> None:
            self.t = transport

        def run(self, n: int, k: int) -> asyncio.Future[None]:
            self.left = n
            self.done = asyncio.get_running_loop().create_future()
            self.sent = prefix + b"%019d" % k + b"x" * 60 + suffix
            self.t.send(TEXT, self.sent)
            return self.done

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == TEXT:
                state["wrong"] += frame.get_payload_as_bytes() != self.sent
                state["answered"] += 1
                self.left -= 1
                if self.left > 0:
                    transport.send(TEXT, self.sent)
                elif self.done is not None and not self.done.done():
                    self.done.set_result(None)
            elif frame.msg_type == CLOSE:
                transport.disconnect()

    conns = [await ws_connect(Client, srv.url + srv.system.echo_path) for _ in range(clients)]
    await _wait(
        asyncio.gather(*(c.run(warmup, k) for k, (_, c) in enumerate(conns))),
        timeout,
        "the warm-up",
    )
    await asyncio.sleep(0.5)  # standstill: nothing in flight
    state["wrong"] = state["answered"] = 0
    srv.measure_on()
    t0 = time.monotonic()
    await _wait(
        asyncio.gather(*(c.run(per_client, k) for k, (_, c) in enumerate(conns))),
        timeout,
        "the measured requests",
    )
    seconds = time.monotonic() - t0
    counters = srv.dump()
    workers = srv.dump_workers() if srv.children else None
    for t, _ in conns:
        with contextlib.suppress(Exception):
            t.disconnect()
    ops = state["answered"]
    row = {"ops": ops, "wrong": state["wrong"], **_per_op(counters, ops), "s": seconds}
    if workers is not None:  # runtime: process: the workers' share, reported beside
        row["workers"] = len(srv.workers())
        row.update({f"workers_{k}": v for k, v in _per_op(workers, ops).items()})
    return row


async def fanout_trial(
    srv: Callgrind, n: int, warmup: int, publications: int, timeout: float
) -> dict[str, Any]:
    """``n`` subscribers; each publication waits until every subscriber got the previous one."""
    sysm = srv.system
    sub = sysm.subscribe_args
    hdrs = dict(h.split(": ", 1) for h in _flag_values(sub, "--header"))
    hellos = [h.encode() for h in _flag_values(sub, "--hello")]
    ack = (_flag_values(sub, "--ack-marker") or [""])[0].encode()
    loop = asyncio.get_running_loop()
    counts: dict[int, int] = {}
    waiting: dict[int, asyncio.Future[None]] = {}
    acked = [0]
    all_acked = loop.create_future()
    total = [0]

    class Sub(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: Any) -> None:
            for h in hellos:
                transport.send(TEXT, h)

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == TEXT:
                payload = frame.get_payload_as_bytes()
                at = payload.find(MARKER)
                if at < 0:
                    if ack and ack in payload:
                        acked[0] += 1
                        if acked[0] == n and not all_acked.done():
                            all_acked.set_result(None)
                    return
                seq = int(payload[at + 2 : at + 12])
                c = counts[seq] = counts.get(seq, 0) + 1
                total[0] += 1
                if c == n:
                    fut = waiting.get(seq)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
            elif frame.msg_type == CLOSE:
                transport.disconnect()

    extra: dict[str, Any] = {"extra_headers": hdrs} if hdrs else {}
    gate = asyncio.Semaphore(50)

    async def one() -> Any:
        async with gate:
            return await ws_connect(
                Sub, srv.url + sysm.sub_path, websocket_handshake_timeout=timeout, **extra
            )

    subs = await asyncio.gather(*(one() for _ in range(n)))
    if ack:
        await _wait(all_acked, timeout, "every subscription's acknowledgement")

    answers = [0]
    if sysm.http_publish:
        ns = argparse.Namespace(
            publish_kind=(_flag_values(sysm.publish_args, "--publish-kind") or ["raw"])[0],
            channel=(_flag_values(sysm.publish_args, "--channel") or ["fan"])[0],
            api_key=(_flag_values(sysm.publish_args, "--api-key") or [""])[0],
            app_key=(_flag_values(sysm.publish_args, "--app-key") or [""])[0],
            secret=(_flag_values(sysm.publish_args, "--secret") or [""])[0],
            http_path=sysm.http_publish,
        )
        parts = urlsplit(srv.url)
        make = publisher(ns, f"{parts.hostname}:{parts.port}")
        bad = [0]

        def answered(_: HttpConn, status: int) -> None:
            answers[0] += 1
            if status not in (200, -1):
                bad[0] += 1

        (conn,) = await http_conns(srv.url.replace("ws://", "http://"), 1, answered, None)

        def send(seq: int) -> None:
            conn.request(make(_message(seq)))

        def errors() -> int:
            return bad[0]
    else:
        pub, _ = await ws_connect(WSListener, srv.url + (sysm.pub_path or "/pub"))
        pub.send(TEXT, b"PUB")

        def send(seq: int) -> None:
            pub.send(TEXT, _message(seq))

        def errors() -> int:
            return 0

    async def publish(seqs: range) -> None:
        for seq in seqs:
            waiting[seq] = loop.create_future()
            send(seq)
            await _wait(waiting[seq], timeout, f"publication {seq} to reach {n} subscribers")

    # The websocket API's subscribers join their channel from $connect: an early publication
    # may miss a late joiner, so only the last warm-up publication must reach everyone.
    for seq in range(warmup):
        waiting[seq] = loop.create_future()
        send(seq)
        last = seq == warmup - 1
        try:
            await _wait(waiting[seq], timeout if last else 20, f"warm-up publication {seq}")
        except RuntimeError:
            if last:
                raise
    seq = warmup
    await asyncio.sleep(0.5)  # standstill: every answer in
    first = seq
    delivered0 = total[0]
    srv.measure_on()
    t0 = time.monotonic()
    await publish(range(first, first + publications))
    while answers[0] < first + publications and sysm.http_publish:
        await asyncio.sleep(0.01)  # the last HTTP answer is part of the measured work
        if time.monotonic() - t0 > timeout:
            break
    seconds = time.monotonic() - t0
    counters = srv.dump()
    delivered = total[0] - delivered0
    for t, _ in subs:
        with contextlib.suppress(Exception):
            t.disconnect()
    return {
        "n": n,
        "publications": publications,
        "ops": delivered,
        "expected": n * publications,
        "publish_errors": errors(),
        **_per_op(counters, delivered),
        "s": seconds,
    }


def _per_op(counters: dict[str, int], ops: int) -> dict[str, Any]:
    ops = max(1, ops)
    return {
        "ir": counters["Ir"],
        "ir_per_op": counters["Ir"] / ops,
        "syscalls_per_op": (counters.get("sysCount", 0) - counters["clock"]) / ops,
        "clock_reads_per_op": counters["clock"] / ops,
    }


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def render(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """This interpreter's section of INSTRUCTIONS.md: the bars, then every trial."""
    ref = {(r["scenario"], r.get("n")): r for r in rows if r["system"] == "picows" and "ir" in r}
    lines = [
        f"## Python {meta['python']} ({meta['date']})",
        "",
        f"Command: `{meta['command']}` ({meta['seconds']} s under valgrind). User-space "
        "instructions (`Ir`) of the server process in the measured window only, one run each "
        "(the count does not depend on load). Syscalls per op (without `clock_gettime`, a vDSO "
        "call outside valgrind, counted apart as clock reads) show the kernel's share, which "
        "the instruction count leaves out.",
        "",
        "| scenario | system | instructions per op | ratio to picows | bar | met "
        "| syscalls per op | clock reads per op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = {
            "echo": "two-way round trip, in-process handler, per request",
            "process": "two-way round trip, `runtime: process`, per request",
        }.get(r["scenario"], f"fan-out N={r.get('n', 0):,}, per delivered message")
        if "ir" not in r:
            lines.append(f"| {name} | {r['system']} | ERROR {r.get('error')} | | | | | |")
            continue
        door = DOORS.get(r["system"].removesuffix("-base").removesuffix("-process"), r["system"])
        if r["system"].endswith("-base"):
            door += " (baseline)"
        sys_cols = f"{r['syscalls_per_op']:.3g} | {r['clock_reads_per_op']:.3g}"
        if r["scenario"] == "process":
            lines += _process_rows(name, door, r, ref.get(("echo", None)))
            continue
        base = ref.get((r["scenario"], r.get("n")))
        if r["system"] == "picows" or base is None:
            lines.append(f"| {name} | {door} | {_fmt(r['ir_per_op'])} | - | - | - | {sys_cols} |")
            continue
        ratio = r["ir_per_op"] / base["ir_per_op"]
        bar = BARS[r["scenario"]]
        met = "yes" if ratio <= bar else "**no**"
        lines.append(
            f"| {name} | {door} | {_fmt(r['ir_per_op'])} | {ratio:.2f}x | ≤ {bar}x | {met} "
            f"| {sys_cols} |"
        )
    lines += [
        "",
        "| trial | ops | checks | Ir total | seconds under callgrind |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        if "ir" not in r:
            continue
        check = (
            f"wrong replies {r['wrong']}" + (f", {r['workers']} workers" if "workers" in r else "")
            if r["scenario"] in ("echo", "process")
            else f"delivered {r['ops']:,} of {r['expected']:,}, "
            f"publish errors {r['publish_errors']}"
        )
        workers_ir = f" + workers {r['workers_ir']:,}" if "workers_ir" in r else ""
        lines.append(
            f"| {r['scenario']} {r.get('n', '')} {r['system']} | {r['ops']:,} | {check} "
            f"| {r['ir']:,}{workers_ir} "
            f"| {r['s']:.0f} |"
        )
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    lines += ["", f"Versions: {versions}.", ""]
    return "\n".join(lines)


def _process_rows(
    name: str, door: str, r: dict[str, Any], picows: dict[str, Any] | None
) -> list[str]:
    """The gateway, its workers and both together, each against picows' echo (no bar: the
    issue asks to report it and halve it)."""
    out = []
    for part, key in (("gateway", ""), ("workers", "workers_"), ("total", "total")):
        if key == "total":
            ir = r["ir_per_op"] + r["workers_ir_per_op"]
            sys_cols = (
                f"{r['syscalls_per_op'] + r['workers_syscalls_per_op']:.3g} | "
                f"{r['clock_reads_per_op'] + r['workers_clock_reads_per_op']:.3g}"
            )
        else:
            ir = r[f"{key}ir_per_op"]
            sys_cols = f"{r[f'{key}syscalls_per_op']:.3g} | {r[f'{key}clock_reads_per_op']:.3g}"
        ratio = f"{ir / picows['ir_per_op']:.2f}x" if picows else "-"
        out.append(f"| {name} | {door}, {part} | {_fmt(ir)} | {ratio} | report | - | {sys_cols} |")
    return out


def write_section(section: str, python: str) -> None:
    """Replace this interpreter's section of INSTRUCTIONS.md (by ``major.minor``), keep others."""
    head = (
        "# Instruction counts (`make bench-instructions`, bench/instructions.py)\n\n"
        + (__doc__ or "").split("\n\n", 2)[2].split("Results:")[0].strip()
        + "\n\n"
    )
    old = OUT.read_text() if OUT.exists() else ""
    parts = re.split(r"(?m)^(?=## Python )", old)[1:]
    key = ".".join(python.split(".")[:2])
    keep = [p for p in parts if not re.match(rf"## Python {re.escape(key)}[.\s]", p)]
    ordered = sorted([*keep, section + "\n"], key=lambda p: p.split()[2], reverse=True)
    OUT.write_text(head + "".join(p.rstrip() + "\n\n" for p in ordered).rstrip() + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--only", default="echo,process,fanout", help="comma list: echo, process, fanout"
    )
    ap.add_argument("--systems", help="comma list: only these servers")
    ap.add_argument("--requests", type=int, default=20_000, help="echo: measured requests")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument(
        "--process-requests", type=int, default=2_000, help="process: measured requests"
    )
    ap.add_argument(
        "--process-clients",
        type=int,
        default=10,
        help="process: clients, hence worker processes (each one under callgrind too)",
    )
    ap.add_argument(
        "--subscribers",
        default="1000,5000",
        help="fan-out sizes (comma list); each gets --deliveries / N publications",
    )
    ap.add_argument(
        "--deliveries", type=int, default=200_000, help="fan-out: measured messages per trial"
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="per wait, seconds")
    ap.add_argument("--baseline-src", help="also run each sockway row from this src/ directory")
    ap.add_argument("--no-write", action="store_true", help="do not touch INSTRUCTIONS.md")
    args = ap.parse_args()
    only = args.only.split(",")
    picked = args.systems.split(",") if args.systems else None
    systems = dict(SYSTEMS)
    plan: list[tuple[str, int, str]] = []
    sizes = [int(n) for n in args.subscribers.split(",")]
    rows_of = [("echo", 0, ECHO_SYSTEMS), ("process", 0, PROCESS_SYSTEMS)]
    rows_of += [("fanout", n, FANOUT_SYSTEMS) for n in sizes]
    for scen, size, names in rows_of:
        if scen not in only:
            continue
        for name in names:
            if picked and name not in picked:
                continue
            plan.append((scen, size, name))
            if args.baseline_src and name.startswith("sockway"):
                systems[f"{name}-base"] = replace(
                    systems[name], name=f"{name}-base", env={"PYTHONPATH": args.baseline_src}
                )
                plan.append((scen, size, f"{name}-base"))
    (HERE / "results").mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = HERE / "results" / f"callgrind-{stamp}"
    outdir.mkdir()
    from run import versions

    meta = {
        "command": "python bench/instructions.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "versions": versions(),
        "interpreter": PY,
    }
    start = time.monotonic()
    rows: list[dict[str, Any]] = []
    raw = HERE / "results" / f"instructions-{stamp}.jsonl"
    print(f"instruction counts on Python {meta['python']}: {len(plan)} trials; raw: {raw}")
    with open(raw, "w") as fh:
        fh.write(json.dumps({"meta": meta}) + "\n")
        for scen, size, name in plan:
            t0 = time.monotonic()
            print(f"  {scen:6} {size or '':>5} {name:20} ", end="", flush=True)
            row: dict[str, Any] = {"scenario": scen, "system": name}
            srv = None
            try:
                system = systems[name]
                srv = Callgrind(
                    _long_init(system) if scen == "process" else system,
                    f"{scen}{size or ''}-{name}",
                    outdir,
                    children=scen == "process",
                )
                if scen == "echo":
                    per = max(1, args.requests // args.clients)
                    coro = echo_trial(srv, args.clients, 20, per, args.timeout)
                elif scen == "process":
                    per = max(1, args.process_requests // args.process_clients)
                    coro = echo_trial(srv, args.process_clients, 20, per, args.timeout)
                else:
                    pubs = max(1, args.deliveries // size)
                    coro = fanout_trial(srv, size, 10, pubs, args.timeout)
                row.update(uvloop.run(coro))
                workers = (
                    f" + workers {row['workers_ir_per_op']:,.0f}" if "workers_ir" in row else ""
                )
                print(
                    f"{row['ir_per_op']:>12,.0f} Ir/op{workers}  ({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )
            except Exception as exc:
                row["error"] = repr(exc)
                print(f"ERROR {exc!r}", flush=True)
            finally:
                if srv is not None:
                    srv.stop()
            rows.append(row)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
    meta["seconds"] = round(time.monotonic() - start)
    section = render(meta, rows)
    print()
    print(section)
    if not args.no_write:
        write_section(section, meta["python"])
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
