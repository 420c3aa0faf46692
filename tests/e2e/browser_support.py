"""A real browser for tests: Debian's chromium (``apt-get install -y chromium``) driven by
Playwright, which never downloads a browser here. Missing chromium fails the test loudly (it
does not skip): the browser tests are part of ``make test``."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SOCKWAY_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"no browser at {CHROMIUM}: the browser tests need Debian's chromium "
            "(apt-get install -y chromium), or SOCKWAY_CHROMIUM=/path/to/chromium"
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()
