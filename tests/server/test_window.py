"""The per-connection in-flight window of the websocket API driver (back-pressure)."""

from __future__ import annotations

import asyncio

from sockway.server.apigw import _Window


async def test_acquire_waits_while_full_and_resumes_on_release() -> None:
    window = _Window(2)
    await window.acquire()
    await window.acquire()
    third = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    assert not third.done()  # the reader stops: two messages are in flight
    window.release()
    await asyncio.wait_for(third, 1)
    assert window.free == 0
    window.release(object())  # as a task done-callback
    window.release()
    assert window.free == 2


async def test_done_releases_the_slot_and_forgets_the_task() -> None:
    tasks: set[asyncio.Task[None]] = set()
    window = _Window(1, tasks)
    await window.acquire()
    task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
    tasks.add(task)
    task.add_done_callback(window.done)
    await task
    await asyncio.sleep(0)  # done-callbacks run on the next loop pass
    assert tasks == set() and window.free == 1
