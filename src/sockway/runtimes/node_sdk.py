"""The ``nodejs:`` settings and the AWS SDK for JavaScript v3 that Node.js handlers resolve.

Lambda's Node.js 18+ runtimes ship the AWS SDK for JavaScript v3, so handlers such as AWS's
``simple-websockets-chat-app`` ship no ``node_modules`` at all and still
``require("@aws-sdk/client-apigatewaymanagementapi")``. sockway gives them the same: the
packages listed in ``nodejs.aws_sdk`` are installed once with npm into
``{state_dir}/nodejs`` (or ``nodejs.sdk_dir``) and put behind the handler's own
``node_modules`` (``NODE_PATH`` for CommonJS, a resolve hook for ES modules; see
``runtimes/node/hooks.mjs``). A handler's own ``node_modules`` always wins, as on Lambda.

The install runs at gateway start when a ``runtime: nodejs`` function exists, logs npm's
progress, holds a file lock (``--workers N`` processes install once) and is skipped when
every listed package is already there. Without npm, or offline, the gateway still starts and
says what is missing: handlers that bundle their dependencies keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("sockway")

# What most WebSocket, Events and webhook handlers call; the whole SDK (300+ clients) would
# take minutes to install. Add packages with ``nodejs.aws_sdk``.
DEFAULT_AWS_SDK = (
    "@aws-sdk/client-apigatewaymanagementapi",
    "@aws-sdk/client-dynamodb",
    "@aws-sdk/lib-dynamodb",
    "@aws-sdk/client-s3",
    "@aws-sdk/client-sqs",
    "@aws-sdk/client-sns",
    "@aws-sdk/client-lambda",
    "@aws-sdk/client-eventbridge",
)
NPM_INSTALL_TIMEOUT_S = 600.0  # a cold npm cache on a slow link; the gateway waits for it


class NodejsSettings(BaseModel):
    """``nodejs:`` — how ``runtime: nodejs`` functions are run (README "Node.js handlers")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field("node", min_length=1, description="node executable: on PATH, or a path")
    npm: str = Field("npm", min_length=1, description="npm executable: on PATH, or a path")
    aws_sdk: list[str] = Field(
        default_factory=lambda: list(DEFAULT_AWS_SDK),
        description="npm packages installed once for handlers that do not bundle them "
        "(Lambda's runtimes include the AWS SDK v3); [] installs nothing",
    )
    sdk_dir: Path | None = Field(
        None, description="where they are installed; default {state_dir}/nodejs"
    )


class NodeNotFound(Exception):
    """The configured ``node`` executable does not exist."""


def find_executable(name: str, key: str) -> str:
    """The absolute path of ``name`` (a path, or a name on PATH); ``NodeNotFound`` if absent."""
    if "/" in name:
        path = Path(name)
        if path.is_file():
            return str(path.resolve())
    else:
        found = shutil.which(name)
        if found is not None:
            return found
    raise NodeNotFound(
        f"runtime: nodejs needs Node.js (18.19, 20.6 or newer), but '{name}' was not found"
        + ("" if "/" in name else " on PATH")
        + f"; install Node.js or set {key} to the executable's path"
    )


def _missing(modules: Path, packages: list[str]) -> list[str]:
    return [p for p in packages if not (modules / p / "package.json").is_file()]


async def ensure_aws_sdk(settings: NodejsSettings, sdk_dir: Path) -> None:
    """Install the missing ``aws_sdk`` packages into ``sdk_dir/node_modules`` (see the module
    docstring). Never raises for npm's failures: they are logged with what to do."""
    packages = list(settings.aws_sdk)
    modules = sdk_dir / "node_modules"
    if not packages or not _missing(modules, packages):
        return
    sdk_dir.mkdir(parents=True, exist_ok=True)
    with (sdk_dir / ".install.lock").open("w") as lock:
        # Another gateway process of this state_dir may be installing: wait for it.
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            missing = _missing(modules, packages)
            if missing:
                await _npm_install(settings, sdk_dir, missing)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


async def _npm_install(settings: NodejsSettings, sdk_dir: Path, packages: list[str]) -> None:
    try:
        npm = find_executable(settings.npm, "nodejs.npm")
    except NodeNotFound:
        log.warning(
            "npm ('%s') was not found, so the AWS SDK for JavaScript v3 (%s) is not installed "
            "into %s: Node.js handlers that import it without bundling it will fail with "
            "Runtime.ImportModuleError. Install npm (it comes with Node.js) or set nodejs.npm; "
            "set nodejs.aws_sdk: [] if your handlers bundle their dependencies.",
            settings.npm,
            ", ".join(packages),
            sdk_dir,
        )
        return
    if not (sdk_dir / "package.json").is_file():
        (sdk_dir / "package.json").write_text(
            '{"name": "sockway-nodejs-runtime", "private": true,\n'
            ' "description": "AWS SDK v3 for runtime: nodejs handlers (installed by sockway)"}\n'
        )
    log.info(
        "installing %d npm package(s) for Node.js handlers into %s (once; later starts reuse "
        "them): %s",
        len(packages),
        sdk_dir,
        " ".join(packages),
    )
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--save",
        "--loglevel=http",  # one line per fetched package: progress in the gateway's log
        *packages,
        cwd=str(sdk_dir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    fetched = 0

    async def follow() -> None:
        nonlocal fetched
        assert proc.stdout is not None
        last_report = time.monotonic()
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            del tail[:-20]
            if "http fetch" in line:
                fetched += 1
                if time.monotonic() - last_report >= 2:
                    last_report = time.monotonic()
                    log.info("npm install: %d files fetched so far", fetched)
            elif line and not line.startswith("npm http"):
                log.info("npm: %s", line)

    try:
        async with asyncio.timeout(NPM_INSTALL_TIMEOUT_S):
            await follow()
            code = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        code = -1
        tail.append(f"(no result after {NPM_INSTALL_TIMEOUT_S:g} s)")
    if code == 0:
        log.info(
            "installed the Node.js handlers' npm packages in %.1f s (%d files fetched)",
            time.monotonic() - started,
            fetched,
        )
        return
    log.warning(
        "npm install of %s into %s failed (exit %s); Node.js handlers that import them "
        "without bundling them will fail with Runtime.ImportModuleError. npm said:\n%s",
        " ".join(packages),
        sdk_dir,
        code,
        "\n".join(tail),
    )
