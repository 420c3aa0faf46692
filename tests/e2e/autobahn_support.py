"""The Autobahn testsuite's fuzzingclient against the gateway (issue 13, standing test A).

``autobahntestsuite`` is Python 2 code: it is installed with the machine's Python 2.7 (pyenv)
into ``.autobahn/`` at the repository root (git-ignored), by ``make autobahn`` — which
``make test`` runs first — or by ``ensure_installed()`` when a test finds it missing. Run as
``python -m tests.e2e.autobahn_support install`` to install only.

``run_fuzzingclient`` writes a spec, runs ``wstest -m fuzzingclient`` as a subprocess (the
gateway under test keeps running in the caller's event loop) and returns the per-agent,
per-case behaviours of ``reports/index.json``.

``KeepAliveProxy`` is how Autobahn reaches the aiohttp transport: it forwards each accepted
connection to the gateway after a plain ``GET /health`` on the same upstream connection, so the
gateway sees the upgrade as a keep-alive connection's second request (served by aiohttp).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / ".autobahn"
VERSION = "25.10.1"  # autobahntestsuite on PyPI; its dependencies resolve for Python 2.7
_MARKER = TARGET / f".installed-{VERSION}"
INSTALL_TIMEOUT_S = 600

# The case families run (Autobahn numbering): framing, pings, reserved bits, opcodes,
# fragmentation, UTF-8, close handling, and the limits family at its smallest sizes.
# 12.* / 13.* (permessage-deflate) are out: no extension is negotiated.
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.1.1", "9.1.2", "9.2.1", "9.2.2"]
EXCLUDED = ["12.*", "13.*"]

# Best first; a case "regresses" when its behaviour moves right in this list.
RANK = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]

_RUNNER = """
import site, sys
site.addsitedir(sys.argv.pop(1))  # processes zope's namespace .pth, which --target does not
from autobahntestsuite.wstest import run
sys.argv[0] = "wstest"
run()
"""


def python27() -> str | None:
    """The Python 2.7 interpreter to install and run Autobahn with (``SOCKWAY_PYTHON27``, the
    pyenv versions, ``python2.7`` on PATH), or None."""
    given = os.environ.get("SOCKWAY_PYTHON27")
    if given:
        return given
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", "2.7*", "bin", "python")))
    if found:
        return found[-1]
    return shutil.which("python2.7")


def ensure_installed() -> tuple[str, Path]:
    """Install autobahntestsuite into ``.autobahn/`` unless it is there; return
    (python2.7, target). Concurrent callers wait for one install (a file lock)."""
    interpreter = python27()
    if interpreter is None:
        raise RuntimeError(
            "Autobahn needs Python 2.7 (pyenv install 2.7.18, or set SOCKWAY_PYTHON27)"
        )
    TARGET.mkdir(exist_ok=True)
    with open(TARGET / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _MARKER.exists():
            subprocess.run(
                [
                    interpreter,
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    "--target",
                    str(TARGET),
                    f"autobahntestsuite=={VERSION}",
                ],
                check=True,
                timeout=INSTALL_TIMEOUT_S,
            )
            (TARGET / "wstest_runner.py").write_text(_RUNNER)
            _MARKER.touch()
    return interpreter, TARGET


async def run_fuzzingclient(
    servers: dict[str, str], outdir: Path, timeout_s: float, cases: list[str] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run the fuzzingclient against ``servers`` (agent → ws:// URL); the report's
    ``{agent: {case: {"behavior", "behaviorClose", ...}}}``."""
    interpreter, target = await asyncio.to_thread(ensure_installed)
    spec = {
        "outdir": str(outdir / "reports"),
        "servers": [{"agent": agent, "url": url} for agent, url in servers.items()],
        "cases": cases if cases is not None else CASES,
        "exclude-cases": EXCLUDED,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec))
    process = await asyncio.create_subprocess_exec(
        interpreter,
        str(target / "wstest_runner.py"),
        str(target),
        "-m",
        "fuzzingclient",
        "-s",
        str(spec_path),
        cwd=outdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"wstest did not finish within {timeout_s} s") from None
    index = outdir / "reports" / "index.json"
    if process.returncode != 0 or not index.exists():
        raise AssertionError(f"wstest failed ({process.returncode}): {output.decode()[-3000:]}")
    report: dict[str, dict[str, dict[str, Any]]] = json.loads(index.read_text())
    return report


def counts(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Autobahn-style counts of one agent: passed (OK), non-strict, informational, failed."""
    tally = {"OK": 0, "NON-STRICT": 0, "INFORMATIONAL": 0, "UNIMPLEMENTED": 0, "FAILED": 0}
    for result in results.values():
        tally[result["behavior"]] = tally.get(result["behavior"], 0) + 1
    return tally


class KeepAliveProxy:
    """Forwards each connection to ``port`` after a plain request on the upstream side."""

    def __init__(self, port: int) -> None:
        self.upstream_port = port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> KeepAliveProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from tests.e2e.rawws import read_http_answer

        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            up_writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await read_http_answer(up_reader)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            up_writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        print("autobahntestsuite in", ensure_installed()[1])
    else:
        raise SystemExit("usage: python -m tests.e2e.autobahn_support install")
