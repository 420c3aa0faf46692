"""Fixtures of the broker contract suite: a ``cluster`` of nodes, memory or Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.brokers.harness import Cluster
from tests.redis_support import RedisClusterServers, RedisServer
from tests.redis_support import redis_url as shared_redis_url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis on 6379 if it answers, else a private one (never skipped)."""
    return shared_redis_url()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def redis_cluster_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A private 3-primary Redis Cluster for the whole session: its nodes' URLs."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")).start()
    yield [servers.url(i) for i in range(len(servers.servers))]
    servers.stop()


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def cluster(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Cluster]:
    """The nodes of one gateway on the memory bus, on a Redis, or on a Redis Cluster (the
    nodes start from different cluster nodes)."""
    url: str | list[str] = ""
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_urls")
    c = Cluster("memory" if request.param == "memory" else "redis", url, prefix)
    yield c
    await c.close()


@pytest.fixture(autouse=True)
async def no_background_errors(
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[list[dict[str, Any]]]:
    """No exception may escape a broker's background task, nor be logged as an error."""
    loop_errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    caplog.set_level(logging.INFO, logger="sockway.broker")
    yield loop_errors
    errors = [
        r for r in caplog.records if r.name == "sockway.broker" and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]
    assert not loop_errors, loop_errors


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
