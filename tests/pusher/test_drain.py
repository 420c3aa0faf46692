"""Waiting for a Pusher app's sessions at shutdown (pusher/door.py ``_all_done``)."""

from __future__ import annotations

import asyncio
from typing import Any

from sockway.pusher.door import _all_done


async def test_a_done_task_still_in_the_set_does_not_spin() -> None:
    # A task that is done but whose done callback (the discard) has not run yet: the old
    # ``while tasks: await gather(*tasks)`` never yielded and spun at 100 % CPU, so a
    # ``sockway serve`` SIGTERM never ended (fresh-clone CI, Python 3.13).
    loop = asyncio.get_running_loop()
    finished = loop.create_task(asyncio.sleep(0))
    await finished
    tasks: set[asyncio.Task[Any]] = {finished}
    await asyncio.wait_for(_all_done(tasks), 5)


async def test_tasks_added_while_waiting_are_waited_for() -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[Any]] = set()
    later = asyncio.Event()

    async def first() -> None:
        await asyncio.sleep(0.01)
        tasks.add(loop.create_task(second()))

    async def second() -> None:
        await asyncio.sleep(0.01)
        later.set()

    tasks.add(loop.create_task(first()))
    await asyncio.wait_for(_all_done(tasks), 5)
    assert later.is_set()
