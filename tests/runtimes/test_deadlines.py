"""Deadlines on the loop's timer wheel behave as ``asyncio.timeout`` (module docstring)."""

from __future__ import annotations

import asyncio
import time

import pytest

from sockway.runtimes import deadlines
from sockway.runtimes.deadlines import RESOLUTION_S, deadline


def pending() -> int:
    wheel = deadlines._wheels.get(asyncio.get_running_loop())
    return wheel.pending if wheel is not None else 0


async def test_a_block_over_its_deadline_raises_timeout_error_not_early() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with deadline(0.2):
            await asyncio.sleep(5)
    took = time.monotonic() - started
    assert 0.19 <= took < 0.2 + RESOLUTION_S + 0.2  # (uvloop's loop.time() is cached: ±1 ms)
    assert pending() == 0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # our cancel was taken back


async def test_a_block_that_finishes_in_time_leaves_nothing_pending() -> None:
    for _ in range(100):
        async with deadline(30):
            await asyncio.sleep(0)
    assert pending() == 0
    await asyncio.sleep(2 * RESOLUTION_S)  # no stray cancel arrives later
    async with deadline(0.5) as d:
        await asyncio.sleep(0.01)
    assert not d.expired


async def test_a_cancel_from_outside_stays_a_cancelled_error() -> None:
    async def body() -> None:
        async with deadline(30):
            await asyncio.sleep(5)

    task = asyncio.get_running_loop().create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pending() == 0


async def test_nested_deadlines_the_inner_one_expires_first() -> None:
    with pytest.raises(TimeoutError):
        async with deadline(0.1), deadline(10):
            await asyncio.sleep(5)
    caught = False
    async with deadline(10):
        try:
            async with deadline(0.1):
                await asyncio.sleep(5)
        except TimeoutError:
            caught = True
        await asyncio.sleep(0.01)  # the outer block goes on, not cancelled
    assert caught and pending() == 0


async def test_many_tasks_with_staggered_deadlines_each_time_out_on_time() -> None:
    async def one(seconds: float) -> float:
        started = time.monotonic()
        try:
            async with deadline(seconds):
                await asyncio.sleep(10)
        except TimeoutError:
            return time.monotonic() - started
        raise AssertionError("no timeout")

    limits = [0.05 * i for i in range(1, 9)]
    took = await asyncio.gather(*(one(s) for s in limits))
    for limit, elapsed in zip(limits, took, strict=True):
        assert limit - 0.01 <= elapsed < limit + RESOLUTION_S + 0.2
