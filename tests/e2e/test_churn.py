"""The churn ledger (issue 13 "Standing tests"): nothing lost, nothing twice, while clients come,
go, reset and stall — on one node, and on three nodes over Redis with a Redis restart and a
node SIGKILL in the run. The harness is ``tests/e2e/churn.py``; ``SOCKWAY_CHURN_SEED`` replays
a run (the seed is printed)."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.churn import Churn, Hooks, config
from tests.e2e.redis_cluster import Node, start_nodes
from tests.redis_support import RedisServer

pytestmark = pytest.mark.timeout(120)


def seed() -> int:
    value = int(os.environ.get("SOCKWAY_CHURN_SEED") or random.SystemRandom().randrange(2**32))
    print(f"churn seed: {value} (replay with SOCKWAY_CHURN_SEED={value})")
    return value


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    h = await Hooks().start()
    yield h
    await h.stop()


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        await node.stop()


def report(churn: Churn, figures: dict[str, int]) -> None:
    print("churn ledger:", figures)
    assert not churn.errors, "\n".join(churn.errors[:30])
    assert figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["messages"] > 50 and figures["joins"] > 20


async def test_churn_on_one_node(hooks: Hooks, nodes: list[Node], tmp_path: Path) -> None:
    [node] = await start_nodes(config(tmp_path, hooks.url, None), 1)
    nodes.append(node)
    churn = Churn(seed(), lambda: [node.port], lambda: [0], hooks)
    await churn.run(seconds=12, clients_per_door=6, chaos=None)
    figures = churn.check()
    churn.check_presence()
    report(churn, figures)
    assert "Traceback" not in node.log(), node.log()[-3000:]


async def test_churn_on_three_nodes_with_a_redis_restart_and_a_node_kill(
    hooks: Hooks, nodes: list[Node], tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    try:
        path = config(tmp_path, hooks.url, redis.url, prefix=f"churn-{uuid.uuid4().hex[:8]}")
        started = await start_nodes(path, 3)
        nodes.extend(started)
        killed: set[int] = set()

        def alive() -> list[int]:
            return [i for i in range(3) if i not in killed]

        churn = Churn(seed(), lambda: [n.port for n in started], alive, hooks)

        async def chaos() -> None:
            await asyncio.sleep(4)
            await churn.restart_redis(redis, [n.port for n in started])
            await asyncio.sleep(3)
            await churn.kill(2, started[2], killed)

        await churn.run(seconds=18, clients_per_door=6, chaos=chaos)
        figures = churn.check()
        churn.check_presence()
        report(churn, figures)
        assert figures["refused"] > 0, "the Redis restart was not seen"
        for i in alive():
            assert "Traceback" not in started[i].log(), started[i].log()[-3000:]
    finally:
        redis.stop()
