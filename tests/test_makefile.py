"""The Makefile's promise (README): ``make serve`` installs only what serving needs — sockway
and its runtime dependencies, no test tools, no npm — and ``make test`` adds the rest.
Checked with ``make -n`` (what it would run), so nothing is installed by the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _plan(target: str, tmp_path: Path) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed")
    result = subprocess.run(
        # --no-print-directory: under `make test` this is a sub-make, which would print
        # "Entering directory" lines around the plan.
        [make, "-n", "-B", "--no-print-directory", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_serve_installs_only_what_serving_needs(tmp_path: Path) -> None:
    plan = _plan("serve", tmp_path)
    assert "pip install --quiet -e .\n" in plan
    assert "[dev]" not in plan
    assert "npm" not in plan
    assert plan.rstrip().endswith("sockway serve")


def test_test_installs_the_test_tools_and_js_clients(tmp_path: Path) -> None:
    plan = _plan("test", tmp_path)
    assert "pip install --quiet -e '.[dev]'" in plan
    assert "npm install" in plan
    assert "pytest" in plan


def test_test_installs_the_browser_and_serve_does_not(tmp_path: Path) -> None:
    assert "apt-get install" in _plan("test", tmp_path)
    assert "apt-get" not in _plan("serve", tmp_path)


def _browser(tmp_path: Path, chromium: str, path: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make is not None
    return subprocess.run(
        [make, "--no-print-directory", "browser", f"SOCKWAY_CHROMIUM={chromium}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": path},
        check=False,
    )


def test_browser_present_installs_nothing(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    result = _browser(tmp_path, str(browser), "/usr/bin:/bin")
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""


def test_browser_missing_without_root_says_how_to_install(tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "id").write_text("#!/bin/sh\necho 1000\n")  # a user who may not apt-get
    (shims / "id").chmod(0o755)
    result = _browser(tmp_path, str(tmp_path / "no-chromium"), f"{shims}:/usr/bin:/bin")
    assert result.returncode == 0  # the browser tests then fail and say why
    assert "WARNING: no chromium" in result.stderr
    assert "apt-get install -y chromium" in result.stderr
