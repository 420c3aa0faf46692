"""Profile the gateway under one benchmark load with py-spy; print where its time goes.

    python bench/profile.py {fanout,fanout-events,fanout-pusher,echo,echo-process,connect,post}
        [--seconds 4] [--subprocesses]

Starts ``sockway serve --config bench/sockway-bench.yaml`` pinned to CPU 0, the load on CPU 1
(as ``run.py`` does), samples the gateway at 200 Hz for ``--seconds`` while the load runs, and
prints the top frames by own ("self") and inclusive share of samples. The collapsed stacks are
kept in ``bench/results/profile-<scenario>.txt`` (flamegraph.pl / speedscope read them).
Needs ``py-spy`` (pip) and permission to read the child's memory (root, or ptrace_scope 0/1).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

import harness
from harness import HERE, Load, Server


def _fanout(name: str, url: str) -> list[Load]:
    """Fan-out through the AppSync Events or Pusher front door, as ``run.py`` drives it."""
    from run import SYSTEMS

    sysm = SYSTEMS[name]
    sub = url + sysm.sub_path
    return [
        Load("subs", "--url", sub, "--n", 1000, "--expect", 3000, *sysm.subscribe_args),
        Load(
            "pub",
            "--url",
            url.replace("ws://", "http://"),
            "--http-path",
            str(sysm.http_publish),
            "--probe-url",
            sub,
            "--count",
            3000,
            *sysm.subscribe_args,
            *sysm.publish_args,
        ),
    ]


LOADS = {
    "fanout": lambda url: [
        Load("subs", "--url", url + "/bench?channel=fan", "--n", 1000, "--expect", 3000),
        Load(
            "pub",
            "--url",
            url.replace("ws://", "http://"),
            "--http-path",
            "/bench/@channels/fan",
            "--probe-url",
            url + "/bench?channel=fan",
            "--count",
            3000,
        ),
    ],
    "fanout-events": lambda url: _fanout("sockway-events", url),
    "fanout-pusher": lambda url: _fanout("sockway-pusher", url),
    "echo": lambda url: [
        Load(
            "echo",
            "--url",
            url + "/bench",
            "--n",
            100,
            "--duration",
            8,
            "--warmup",
            0.5,
            "--template",
            '{"action":"echo","t":"{}"}',
        ),
    ],
    # The same through worker processes (``runtime: process``): 100 workers start cold in the
    # warm-up (as run.py's sockway-process); --subprocesses also samples the workers.
    "echo-process": lambda url: [
        Load(
            "echo",
            "--url",
            url + "/bench",
            "--n",
            100,
            "--duration",
            20,
            "--warmup",
            12,
            "--template",
            '{"action":"echo_process","t":"{}"}',
        ),
    ],
    "connect": lambda url: [
        # 18,000 opens take ~5 s here: the sampling window sees opens only (closes come after).
        Load("connect", "--url", url + "/bench", "--n", 18000, "--concurrency", 100),
    ],
    "post": lambda url: [
        Load(
            "post",
            "--url",
            url.replace("ws://", "http://"),
            "--ws-url",
            url + "/bench",
            "--http-path",
            "/bench/@connections/{id}",
            "--n",
            16,
            "--duration",
            8,
        ),
    ],
}


def top(stacks: Path, limit: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    skip = ("click/", "runpy", "__main__", "cli.py", "uvloop/__init__", "runners.py:")
    out = [f"{total} samples", "-- self"]
    out += [f"{100 * n / total:5.1f}% {f}" for f, n in own.most_common(limit)]
    out.append("-- inclusive")
    out += [
        f"{100 * n / total:5.1f}% {f}"
        for f, n in incl.most_common(limit * 3)
        if not any(s in f for s in skip)
    ][:limit]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("scenario", choices=sorted(LOADS))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument(
        "--subprocesses", action="store_true", help="also sample the gateway's handler workers"
    )
    a = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    (HERE / "results").mkdir(exist_ok=True)
    harness.LOGS.mkdir(parents=True, exist_ok=True)
    out = HERE / "results" / f"profile-{a.scenario}.txt"
    from run import SYSTEMS

    srv = Server(SYSTEMS["sockway"], f"profile-{a.scenario}")
    loads = []
    try:
        loads = LOADS[a.scenario](srv.url)
        for ld in loads:
            if (a.scenario.startswith("fanout") or a.scenario == "connect") and ld is loads[0]:
                ld.ready()
                if a.scenario == "connect":
                    ld.tell("go")
        time.sleep({"connect": 0.2, "echo-process": 13.0}.get(a.scenario, 1.0))
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(srv.pid),
                "-d",
                str(a.seconds),
                "-r",
                "200",
                "--format",
                "raw",
                "-o",
                str(out),
                "--nonblocking",
                *(["--subprocesses"] if a.subprocesses else []),
            ],
            check=True,
            capture_output=True,
            timeout=a.seconds + 30,
        )
        for ld in loads:
            ld.result(120)
    finally:
        for ld in loads:
            if ld.proc.poll() is None:
                ld.proc.kill()
        srv.stop()
    print(top(out, a.top))
    print(f"\ncollapsed stacks: {out}")


if __name__ == "__main__":
    main()
