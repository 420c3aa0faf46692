"""Smoke run of the benchmark harness (issue 7), so ``make bench`` does not rot.

Runs the gateway scenarios that need no reference server for a couple of seconds each — the
fan-out through all three front doors (websocket API, AppSync Events, Pusher), the two-way
round trip in-process and in worker processes — and checks that every trial produced a result,
every published message reached every subscriber and every echo came back unchanged. No figure is asserted: performance belongs in
``bench/RESULTS.md``, not in tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def quick_run(out: Path, timeout: float, *args: str) -> list[dict[str, Any]]:
    """``bench/run.py --quick … --out out``: the raw rows of its trials (it must succeed)."""
    run = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    raw = next(line.split("raw: ")[1] for line in run.stdout.splitlines() if "raw: " in line)
    return [json.loads(x) for x in (BENCH / raw).read_text().splitlines()[1:]]


@pytest.mark.timeout(240)
def instructions_run(*args: str) -> tuple[str, list[dict[str, Any]]]:
    """bench/instructions.py with ``args`` (nothing written to bench/): its output and the
    rows of its raw results file."""
    run = subprocess.run(
        [sys.executable, str(BENCH / "instructions.py"), *args, "--no-write"],
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    raw = next(line.split("raw: ")[1] for line in run.stdout.splitlines() if "raw: " in line)
    return run.stdout, [json.loads(x) for x in Path(raw).read_text().splitlines()[1:]]


def test_quick_run_of_the_gateway_scenarios_produces_results(tmp_path: Path) -> None:
    out = tmp_path / "smoke.md"
    rows = quick_run(
        out,
        230,
        *("--runs", "1", "--only", "fanout,echo,post,connect"),
        *("--systems", "sockway,sockway-events,sockway-pusher,sockway-process"),
    )
    assert {r["scenario"] for r in rows} == {"fanout", "echo", "post", "connect"}
    for row in rows:
        assert "result" in row, row.get("error")
    fanouts = {r["system"]: r["result"] for r in rows if r["scenario"] == "fanout"}
    assert set(fanouts) == {"sockway", "sockway-events", "sockway-pusher"}
    for fanout in fanouts.values():
        assert fanout["broadcasts"] > 0
        assert fanout["publish_errors"] == 0
        assert fanout["delivered"] == fanout["expected"]
    assert next(r["result"] for r in rows if r["scenario"] == "post")["non_200"] == 0
    echoes = {r["system"]: r["result"] for r in rows if r["scenario"] == "echo"}
    assert set(echoes) == {"sockway", "sockway-process"}
    for echo in echoes.values():
        assert echo["rps"] > 0 and echo["wrong_replies"] == 0
    assert echoes["sockway"]["server_processes"] == 1
    assert echoes["sockway-process"]["server_processes"] > 1  # the workers were measured too
    assert "## The bars (issue 7)" in out.read_text()


@pytest.mark.timeout(120)
def test_quick_run_of_the_cross_node_cost_delivers_every_message(tmp_path: Path) -> None:
    """bench/cluster.py (issue 6) on two gateway processes and a private redis-server: every
    publication of node A reaches every subscriber on node B exactly once, and the CPU of each
    process is read. Fails (does not skip) without redis-server, like the cluster tests."""
    out = tmp_path / "cluster.md"
    rows = quick_run(out, 110, "--only", "cluster", "--systems", "1-node-memory,2-nodes-remote")
    assert [r["system"] for r in rows] == ["1-node-memory", "2-nodes-remote"]
    for row in rows:
        assert "result" in row, row.get("error")
        assert row["result"]["delivered"] == row["result"]["expected"] > 0
        assert row["result"]["publish_errors"] == 0
    remote = rows[1]["result"]
    assert remote["gateway_B_cpu_s"] > 0
    assert remote["redis_info_cpu_s"] > 0
    assert "## Cost of cross-node delivery (issue 6)" in out.read_text()


@pytest.mark.timeout(300)
def test_instruction_counts_of_a_tiny_workload(tmp_path: Path) -> None:
    """bench/instructions.py (issue 18) under valgrind's callgrind: sockway and picows each
    counted over exactly the measured requests and deliveries, every answer checked. Fails
    (does not skip) without valgrind. No figure is asserted beyond "something was counted"."""
    stdout, rows = instructions_run(
        *("--requests", "200", "--clients", "10", "--subscribers", "20"),
        *("--deliveries", "100", "--systems", "sockway,sockway-pusher,picows"),
    )
    assert [(r["scenario"], r["system"]) for r in rows] == [
        ("echo", "sockway"),
        ("echo", "picows"),
        ("fanout", "sockway"),
        ("fanout", "sockway-pusher"),
        ("fanout", "picows"),
    ]
    for row in rows:
        assert "error" not in row, row["error"]
        assert row["ir"] > 0 and row["syscalls_per_op"] > 0
        if row["scenario"] == "echo":
            assert row["ops"] == 200 and row["wrong"] == 0
        else:
            assert row["ops"] == row["expected"] == 100 and row["publish_errors"] == 0
    assert "| two-way round trip" in stdout


@pytest.mark.timeout(300)
def test_instruction_counts_of_the_process_runtime(tmp_path: Path) -> None:
    """bench/instructions.py's ``process`` row: the gateway and each of its worker processes
    under callgrind, both counted over exactly the measured requests (workers apart)."""
    stdout, (row,) = instructions_run(
        *("--only", "process", "--process-clients", "2", "--process-requests", "40")
    )
    assert "error" not in row, row["error"]
    assert (row["scenario"], row["system"], row["ops"], row["wrong"]) == (
        "process",
        "sockway-process",
        40,
        0,
    )
    assert row["workers"] == 2 and row["ir"] > 0 and row["workers_ir"] > 0
    assert "websocket API, workers" in stdout
