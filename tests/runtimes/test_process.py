"""The process runtime with real worker processes, without a gateway (runtimes/process.py)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sockway.runtimes.base import Invocation, InvocationError
from sockway.runtimes.factory import FunctionSpec
from sockway.runtimes.inprocess import HandlerLoadError
from sockway.runtimes.process import (
    ProcessIntegration,
    WorkerPools,
    check_process_handler_ref,
    function_environment,
)
from sockway.runtimes.worker import exit_reason
from tests.conftest import write_handlers

CODE = """
import asyncio
import ctypes
import os
import subprocess
import time

CALLS = []


def echo(event, context):
    CALLS.append(1)
    return {"pid": os.getpid(), "calls": len(CALLS), "event": event}


async def async_echo(event, context):
    await asyncio.sleep(0)
    return {"async": True, "event": event}


def segfault(event, context):
    ctypes.string_at(0)


def not_json(event, context):
    return {"when": object()}


def spawn_and_sleep(event, context):
    child = subprocess.Popen(["sleep", "60"])
    with open(event["pidfile"], "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
"""

Build = Callable[..., ProcessIntegration]


@pytest.fixture
async def build(tmp_path: Path) -> AsyncIterator[Build]:
    code = write_handlers(tmp_path / "code", {"mod.py": CODE, "broken.py": "import nowhere_xyz\n"})
    pools = WorkerPools(reload=False)

    def make(ref: str, **spec: object) -> ProcessIntegration:
        return pools.build(
            FunctionSpec(ref=ref, function_name=ref.replace(".", "-"), code_dir=code, **spec)  # type: ignore[arg-type]
        )

    yield make
    await pools.aclose()


def call(timeout_s: float = 10) -> Invocation:
    return Invocation("req-1", timeout_s)


async def test_warm_worker_is_reused_and_keeps_module_state(build: Build) -> None:
    echo = build("mod.echo")
    first = await echo.invoke({"n": 1}, call())
    second = await echo.invoke({"n": 2}, call())
    assert first["pid"] == second["pid"] != os.getpid()
    assert (first["calls"], second["calls"]) == (1, 2)
    assert second["event"] == {"n": 2}


async def test_concurrent_invocations_run_in_separate_workers(build: Build) -> None:
    echo = build("mod.echo")
    first, second = await asyncio.gather(echo.invoke({}, call()), echo.invoke({}, call()))
    assert first["pid"] != second["pid"]
    third = await echo.invoke({}, call())
    assert third["pid"] in (first["pid"], second["pid"])  # both stay warm


async def test_worker_that_cannot_start_is_a_service_error(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(InvocationError) as info:
        await build("mod.echo").invoke({}, call())
    assert info.value.error_type == "ServiceException"


async def test_async_handler(build: Build) -> None:
    assert await build("mod.async_echo").invoke({"x": 1}, call()) == {
        "async": True,
        "event": {"x": 1},
    }


async def test_segfault_is_a_runtime_exit_error(build: Build) -> None:
    with pytest.raises(InvocationError) as info:
        await build("mod.segfault").invoke({}, call())
    assert info.value.error_type == "Runtime.ExitError"
    assert info.value.error_message == (
        "RequestId: req-1 Error: Runtime exited with error: signal: segmentation fault"
    )


async def test_unserialisable_result_is_a_marshal_error(build: Build) -> None:
    echo = build("mod.not_json")
    with pytest.raises(InvocationError) as info:
        await echo.invoke({}, call())
    assert info.value.error_type == "Runtime.MarshalError"


@pytest.mark.parametrize(
    ("ref", "error_type", "message"),
    [
        ("broken.handler", "Runtime.ImportModuleError", "Unable to import module 'broken': "),
        ("mod.nothere", "Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'mod'"),
    ],
)
async def test_init_errors_as_lambda_reports_them(
    build: Build, ref: str, error_type: str, message: str
) -> None:
    with pytest.raises(InvocationError) as info:
        await build(ref).invoke({}, call())
    assert info.value.error_type == error_type
    assert info.value.error_message.startswith(message)


async def test_timeout_kills_the_whole_process_group(build: Build, tmp_path: Path) -> None:
    from sockway.runtimes.base import InvocationTimeout

    pidfile = tmp_path / "child.pid"
    slow = build("mod.spawn_and_sleep")
    with pytest.raises(InvocationTimeout):
        await slow.invoke({"pidfile": str(pidfile)}, call(timeout_s=2))
    child = int(pidfile.read_text())
    deadline = asyncio.get_running_loop().time() + 10
    while _alive(child):
        assert asyncio.get_running_loop().time() < deadline, "the handler's child survived"
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_cancelled_invocation_kills_its_worker_and_close_ends_all(
    build: Build, tmp_path: Path
) -> None:
    echo = build("mod.echo")
    pid = (await echo.invoke({}, call()))["pid"]
    sleeper = build("mod.spawn_and_sleep")
    pidfile = tmp_path / "child.pid"
    task = asyncio.ensure_future(sleeper.invoke({"pidfile": str(pidfile)}, call(timeout_s=30)))
    deadline = asyncio.get_running_loop().time() + 10
    while not pidfile.exists() or not pidfile.read_text():
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    child = int(pidfile.read_text())
    while _alive(child):
        assert asyncio.get_running_loop().time() < deadline, "the cancelled handler survived"
        await asyncio.sleep(0.05)
    await echo.aclose()
    assert not _alive(pid)
    with pytest.raises(InvocationError) as info:
        await echo.invoke({}, call())  # closed: nothing runs any more
    assert info.value.error_type == "ServiceException"


async def test_reload_starts_workers_with_the_new_code(build: Build, tmp_path: Path) -> None:
    echo = build("mod.echo")
    before = await echo.invoke({}, call())
    (tmp_path / "code" / "mod.py").write_text(CODE.replace('"calls"', '"reloaded": True, "calls"'))
    echo.reload()
    after = await echo.invoke({}, call())
    assert after["pid"] != before["pid"] and after["reloaded"] is True


def test_function_environment_keeps_functions_apart() -> None:
    spec = FunctionSpec(
        ref="app.handler",
        function_name="chat-send",
        code_dir=Path("/srv/code"),
        region="eu-west-1",
        memory_mb=256,
        environment={"TABLE": "mine"},
    )
    base = {"PATH": "/bin", "TABLE": "gateway", "OTHER_API_KEY": "theirs", "PYTHONPATH": "/x"}
    env = function_environment(spec, base, {"TABLE", "OTHER_API_KEY"})
    assert env["TABLE"] == "mine" and "OTHER_API_KEY" not in env and env["PATH"] == "/bin"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "chat-send"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["_HANDLER"] == "app.handler" and env["LAMBDA_TASK_ROOT"] == "/srv/code"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/chat-send"
    assert env["PYTHONPATH"].endswith(os.pathsep + "/x")


def test_exit_reasons_use_lambdas_wording() -> None:
    assert exit_reason(3) == "Runtime exited with error: exit status 3"
    assert exit_reason(0) == "Runtime exited without providing a reason"
    assert exit_reason(-signal.SIGKILL) == "Runtime exited with error: signal: killed"
    assert exit_reason(-signal.SIGSEGV) == "Runtime exited with error: signal: segmentation fault"
    assert exit_reason(-signal.SIGTERM) == "Runtime exited with error: signal: terminated"


def test_check_process_handler_ref(tmp_path: Path) -> None:
    write_handlers(tmp_path, {"present.py": "raise SystemExit('never imported')\n"})
    check_process_handler_ref("present.handler", tmp_path)
    check_process_handler_ref("json.dumps", None)  # installed modules resolve too
    with pytest.raises(HandlerLoadError, match="module 'absent' not found in"):
        check_process_handler_ref("absent.handler", tmp_path)
    with pytest.raises(HandlerLoadError, match=r"must be written as module\.function"):
        check_process_handler_ref("nodot", tmp_path)


@pytest.mark.parametrize(("reload", "expected"), [(False, "old"), (True, "new")])
async def test_reload_mode_never_runs_a_stale_pyc(
    tmp_path: Path, reload: bool, expected: str
) -> None:
    import py_compile

    code = write_handlers(tmp_path / "code", {"same.py": "def h(e, c):\n    return 'old'\n"})
    source = code / "same.py"
    py_compile.compile(str(source))  # cached bytecode of the old source
    stat = source.stat()
    source.write_text("def h(e, c):\n    return 'new'\n")  # same size …
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # … and the same mtime
    pools = WorkerPools(reload=reload)
    try:
        spec = FunctionSpec(ref="same.h", function_name="same", code_dir=code)
        assert await pools.build(spec).invoke({}, call()) == expected
    finally:
        await pools.aclose()


async def test_a_huge_output_line_does_not_break_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO)
    source = "def h(e, c):\n    print('x' * (1024 * 1024))\n    print('after')\n    return 1\n"
    code = write_handlers(tmp_path / "code", {"loud.py": source})
    pools = WorkerPools(reload=False)
    try:
        loud = pools.build(FunctionSpec(ref="loud.h", function_name="loud", code_dir=code))
        assert await loud.invoke({}, call()) == 1
        assert await loud.invoke({}, call()) == 1
    finally:
        await pools.aclose()
    assert "longer than 256 KiB was dropped" in caplog.text
    assert "[loud] [req-1] after" in caplog.text


async def test_output_is_logged_before_end_and_report_without_a_marker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README "Handler runtimes" (logs): every line the handler wrote, the last one without
    its newline too, comes before END/REPORT, and REPORT has the worker's peak memory."""
    import logging

    caplog.set_level(logging.INFO)
    source = (
        "import os, sys\n"
        "def h(e, c):\n"
        "    print('first')\n"
        "    os.write(2, b'from fd 2\\n')\n"
        "    print('no newline', end='')\n"
        "    return 1\n"
    )
    code = write_handlers(tmp_path / "code", {"quiet.py": source})
    pools = WorkerPools(reload=False)
    try:
        fn = pools.build(FunctionSpec(ref="quiet.h", function_name="quiet", code_dir=code))
        for n in range(3):
            assert await fn.invoke({}, Invocation(f"req-{n}", 10)) == 1
    finally:
        await pools.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "sockway.function"]
    for n in range(3):
        mine = [line for line in lines if f"req-{n}" in line]
        assert mine[1:] == [
            f"[quiet] [req-{n}] first",
            f"[quiet] [req-{n}] from fd 2",
            f"[quiet] [req-{n}] no newline",
            f"[quiet] END RequestId: req-{n}",
            mine[-1],
        ], mine
        assert mine[0].startswith(f"[quiet] START RequestId: req-{n}")
        assert "Max Memory Used: " in mine[-1] and "Max Memory Used: 0 MB" not in mine[-1]


async def test_workers_run_under_batch_scheduling(tmp_path: Path) -> None:
    """README "Handler runtimes" (scheduling): a worker does not preempt the gateway."""
    source = "import os\ndef h(e, c):\n    return os.sched_getscheduler(0)\n"
    code = write_handlers(tmp_path / "code", {"policy.py": source})
    pools = WorkerPools(reload=False)
    try:
        fn = pools.build(FunctionSpec(ref="policy.h", function_name="policy", code_dir=code))
        assert await fn.invoke({}, call()) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the gateway keeps its own
    finally:
        await pools.aclose()
