"""A function's own dependencies: ``requirements.txt`` next to its code, installed as
``sam build`` / ``serverless-python-requirements`` do, once.

Each distinct file is installed with pip (``pip install -r requirements.txt --target DIR``,
the Python running sockway) into ``{state_dir}/dependencies/{hash}``, where the hash covers
the file's bytes and the Python version: a second start, or another function with the same
file, reuses the directory; an edited file gets a new one. The directory goes on the
function's ``PYTHONPATH`` (after its code, as the package's own directories are on Lambda). An
install in progress writes to ``{hash}.partial`` and is renamed when complete, so an
interrupted install is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sockway.projects.problems import ProjectError

REQUIREMENTS = "requirements.txt"


def requirements_of(code_dir: Path) -> Path | None:
    path = code_dir / REQUIREMENTS
    return path if path.is_file() else None


def dependency_dir(requirements: Path, state_dir: Path) -> Path:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(f"{sys.version_info[0]}.{sys.version_info[1]}".encode())
    return state_dir / "dependencies" / digest.hexdigest()[:16]


def install(requirements: Path, state_dir: Path, say: Callable[[str], None]) -> Path:
    """The installed directory of ``requirements`` (installing it first if needed)."""
    target = dependency_dir(requirements, state_dir)
    if target.is_dir():
        say(f"dependencies of {requirements}: cached in {target}")
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    say(f"installing {requirements} into {target} ...")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "--no-input",
            "-r",
            str(requirements),
            "--target",
            str(partial),
        ],
        cwd=requirements.parent,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n    ".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ProjectError([f"{requirements}: pip install failed:\n    {tail}"])
    partial.rename(target)
    say(f"installed {requirements}")
    return target


def add_dependencies(
    config: dict[str, Any], state_dir: Path, say: Callable[[str], None], *, install_now: bool
) -> list[Path]:
    """Put each function's installed ``requirements.txt`` on its ``PYTHONPATH`` (every mapping
    of ``config`` with a ``code_dir`` and a ``handler``); return the files found. Without
    ``install_now`` (``check-config``) nothing is installed or changed."""
    found: list[Path] = []
    installed: dict[Path, Path] = {}
    for holder in _functions(config):
        requirements = requirements_of(Path(str(holder["code_dir"])))
        if requirements is None:
            continue
        if requirements not in found:
            found.append(requirements)
        if not install_now:
            continue
        if requirements not in installed:
            installed[requirements] = install(requirements, state_dir, say)
        environment = dict(holder.get("environment") or {})
        paths = [str(installed[requirements])]
        if environment.get("PYTHONPATH"):
            paths.append(environment["PYTHONPATH"])
        environment["PYTHONPATH"] = ":".join(paths)
        holder["environment"] = environment
    return found


def _functions(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "code_dir" in node and "handler" in node:
            out.append(node)
        for value in node.values():
            out += _functions(value)
    elif isinstance(node, list):
        for value in node:
            out += _functions(value)
    return out
