"""Message tasks started eagerly on 3.12+ (``transport/eager.py``), scheduled on 3.11.

Each test asserts what the running interpreter must do; ``make test`` runs the suite on the
newest interpreter found and on 3.11, so both branches are exercised.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sockway.transport.eager import EAGER, start_message


def test_eager_exactly_from_3_12() -> None:
    assert (sys.version_info >= (3, 12)) == EAGER


async def test_a_coroutine_that_never_suspends() -> None:
    ran: list[str] = []

    async def handler() -> None:
        ran.append("ran")

    task = start_message(handler())
    if EAGER:
        assert task is None  # finished inside the call: no task left to schedule or track
        assert ran == ["ran"]
    else:
        assert isinstance(task, asyncio.Task) and ran == []
        await task
        assert ran == ["ran"]


async def test_a_coroutine_that_suspends_goes_on_as_a_task() -> None:
    steps: list[str] = []
    gate = asyncio.get_running_loop().create_future()

    async def handler() -> str:
        steps.append("before")
        await gate
        steps.append("after")
        return "done"

    task = start_message(handler())
    assert isinstance(task, asyncio.Task)
    assert steps == (["before"] if EAGER else [])  # eagerly: up to the first suspension
    gate.set_result(None)
    assert await task == "done"
    assert steps == ["before", "after"]


async def test_the_current_task_is_set_while_it_runs_eagerly() -> None:
    # Handlers use asyncio.timeout() and the deadline wheel, which need the current task.
    seen: list[Any] = []

    async def handler() -> None:
        seen.append(asyncio.current_task())
        async with asyncio.timeout(5):
            pass

    task = start_message(handler())
    if task is not None:
        await task
    assert seen and seen[0] is not None and seen[0] is not asyncio.current_task()


async def test_order_of_start_is_the_order_of_arrival() -> None:
    started: list[int] = []
    gate = asyncio.get_running_loop().create_future()

    async def handler(i: int) -> None:
        started.append(i)
        if i % 2:
            await gate

    tasks = [start_message(handler(i)) for i in range(6)]
    await asyncio.sleep(0)
    assert started == list(range(6))
    gate.set_result(None)
    await asyncio.gather(*(t for t in tasks if t is not None))


async def test_an_exception_of_an_eagerly_finished_coroutine_is_reported() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:

        async def handler() -> None:
            raise ValueError("boom")

        task = start_message(handler())
        if task is not None:  # 3.11: the task's exception, as before
            await asyncio.sleep(0)
            assert isinstance(task.exception(), ValueError)
        else:
            assert len(reported) == 1
            assert isinstance(reported[0]["exception"], ValueError)
    finally:
        loop.set_exception_handler(None)
