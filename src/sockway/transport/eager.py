"""One task per received message, started eagerly where the interpreter can (issue 18).

Every front door runs each text message on a task of its own, so that one connection's messages
are handled concurrently, as API Gateway and AppSync do (at most the connection's in-flight
window at once; ``PicowsConnection``). On Python 3.12+ the task starts *eagerly*
(``asyncio.Task(..., eager_start=True)``): the coroutine runs at once, inside the call, up to
its first suspension. A handler that answers without awaiting anything then finishes before
``start_message`` returns, and costs no trip through the event loop's ready queue, no
registration among the loop's scheduled tasks and no done-callback: ``start_message`` returns
``None`` and the message frees its window slot at once. A handler that does suspend goes on as
an ordinary task.

Order is unchanged: messages are started in the order they arrived either way; eagerly, a
message runs up to its first suspension before the next one is started, where a scheduled task
would have started on the loop's next turn, after the read that delivered it.

On 3.11 (no eager start) every message is an ordinary scheduled task, as before.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EAGER = sys.version_info >= (3, 12)

if sys.version_info >= (3, 12):

    def start_message(
        coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Task[T] | None:
        """Run ``coro`` as a task of ``loop`` (the running one), started eagerly; ``None``
        when it already finished without suspending (its effects are done). An exception
        raised by such a coroutine goes to the loop's exception handler, as an unretrieved
        task exception would."""
        if loop is None:
            loop = asyncio.get_running_loop()
        task = asyncio.Task(coro, loop=loop, eager_start=True)
        if not task.done():
            return task
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {"message": "Message task exception", "exception": task.exception(), "task": task}
            )
        return None

else:

    def start_message(
        coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Task[T] | None:
        """Run ``coro`` as a task of ``loop`` (the running one; scheduled: no eager start on
        3.11, where ``get_running_loop()`` is a ``getpid()`` syscall: pass the loop)."""
        return (loop or asyncio.get_running_loop()).create_task(coro)
