"""Shared fixtures: a real gateway on an ephemeral port, in the test's event loop.

``start_gateway(config_dict)`` validates the dict exactly as a YAML file would be (relative
paths resolve against ``tmp_path``), starts a ``Gateway`` on ``127.0.0.1:0`` and stops it after
the test; ``broker=`` puts it on a given broker (several gateways on one ``MemoryBus`` or one Redis
form a cluster). The process environment and imported handler modules are restored afterwards, so
tests can ship handler modules with the same names.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from sockway.brokers.base import Broker
from sockway.gateway.config import parse_config
from sockway.gateway.gateway import Gateway
from tests.e2e.browser_support import browser  # noqa: F401 (a fixture: Debian's chromium)

StartGateway = Callable[..., Awaitable[Gateway]]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
    """Tests marked ``uvloop`` run on uvloop, the loop ``sockway serve`` runs on: some faults
    show only there (a write to a transport the peer reset raises ``RuntimeError`` on uvloop;
    asyncio's own loop drops it silently)."""
    if item.get_closest_marker("uvloop") is not None:
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(autouse=True)
def _isolate_process_state(tmp_path: Path) -> Iterator[None]:
    env = dict(os.environ)
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        mod = sys.modules.get(name)
        origin = getattr(mod, "__file__", None) or ""
        if origin.startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
async def start_gateway(tmp_path: Path) -> AsyncIterator[StartGateway]:
    started: list[Gateway] = []

    async def start(
        config: dict[str, Any], base_dir: Path | None = None, broker: Broker | None = None
    ) -> Gateway:
        config = dict(config)
        config.setdefault("listen", "127.0.0.1:0")
        config.setdefault("state_dir", str(tmp_path / "state"))
        settings = parse_config(config, base_dir or tmp_path)
        gateway = Gateway(settings, broker=broker)
        await gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop(grace_s=5)


def write_handlers(directory: Path, files: dict[str, str]) -> Path:
    """Write handler modules (name → source) into ``directory`` and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        (directory / name).write_text(source)
    return directory
