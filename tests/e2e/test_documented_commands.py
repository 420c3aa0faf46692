"""The commands of the examples' READMEs, run as a newcomer types them (from the repository
root, in a copy of it), against ``sockway serve`` started as documented. Only the port differs:
the documented one (8080) becomes the port the gateway picked."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def documented_commands(readme: Path | str) -> list[str]:
    """The shell commands of a README's ``sh`` blocks (continuation lines joined)."""
    text = readme.read_text() if isinstance(readme, Path) else readme
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line:
                commands.append(line)
    return commands


def _copy(tmp_path: Path, example: str) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(
        ROOT / "examples" / example,
        root / "examples" / example,
        ignore=shutil.ignore_patterns(".sockway", "__pycache__", "node_modules"),
    )
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    return root


def _env() -> dict[str, str]:
    # ``python`` and ``sockway`` are the ones of the virtualenv the README had you create.
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Path, int, list[str]]]:
    root = _copy(tmp_path, "events")
    commands = documented_commands(root / "examples" / "events" / "README.md")
    serve = next(c for c in commands if c.startswith("sockway serve"))
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_shell(
            "exec " + serve + " --port 0", cwd=root, env=_env(), stdout=sink, stderr=sink
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (found := re.search(r"health: http://[^:]+:(\d+)/", log.read_text())) is None:
            assert proc.returncode is None and loop.time() < deadline, log.read_text()
            await asyncio.sleep(0.05)
        yield root, int(found[1]), [c for c in commands if c is not serve]
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def _run(root: Path, command: str, port: int) -> str:
    proc = await asyncio.create_subprocess_shell(
        command.replace(":8080", f":{port}"),
        cwd=root,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0, f"{command}\n{out.decode()}"
    return out.decode()


async def test_events_example_commands_as_written(
    served: tuple[Path, int, list[str]],
) -> None:
    root, port, commands = served
    assert (root / "examples/events/.sockway/tls/ca.pem").exists()  # where the docs say
    python = next(c for c in commands if c.startswith("python examples/events/client.py"))
    assert '"text": "hello over HTTP"' in await _run(root, python, port)
    amplify = next(c for c in commands if "amplify_client.mjs" in c)
    assert amplify.startswith("NODE_EXTRA_CA_CERTS=examples/events/.sockway/tls/ca.pem ")
    assert "HTTP works too" in await _run(root, amplify, port)


def test_tutorial_install_names_what_its_handlers_import() -> None:
    # `pip install '.[local]'` brings sockway's dependencies only; every other package the
    # tutorial's handlers import must be in the documented command (boto3, preinstalled on
    # Lambda, is one of sockway's).
    tutorial = (ROOT / "README.md").read_text().split("## Tutorial", 1)[1].split("\n## ", 1)[0]
    (pip,) = [c for c in documented_commands(tutorial) if c.startswith("pip install '.")]
    imported = set()
    for handler in (ROOT / "examples" / "chat" / "handlers").glob("*.py"):
        for node in ast.walk(ast.parse(handler.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provided = {re.split(r"[\[<>=!~ ]", d)[0].lower() for d in project["dependencies"]}
    needed = imported - set(sys.stdlib_module_names) - {"__future__"} - provided
    assert "boto3" in imported and "boto3" in provided  # a dependency, as on Lambda
    assert set(pip.split()) >= needed
