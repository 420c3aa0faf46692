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
