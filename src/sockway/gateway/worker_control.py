"""A worker's side of ``sockway serve --workers N`` (issue 6; see ``gateway.supervisor``).

The supervisor starts each worker with one end of a socketpair (``--worker-fd``). The worker
writes its banner there as one JSON line once it listens — that is its "ready" — and then
keeps the socket open as a lifeline: EOF means the supervisor is gone (even killed with
SIGKILL), and the worker drains exactly as on SIGTERM rather than live on as an orphan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

import orjson

log = logging.getLogger("sockway.worker")


def report_ready(fd: int, banner: list[str]) -> None:
    """Tell the supervisor this worker listens; drain (SIGTERM to self) when it goes away.

    Call from the running event loop, before ``Gateway.serve_forever`` (which installs the
    SIGTERM handler before the loop can run the watcher).
    """
    control = socket.socket(fileno=fd)
    control.set_inheritable(False)  # not into the process runtime's workers
    control.setblocking(True)
    control.sendall(orjson.dumps(banner) + b"\n")
    control.setblocking(False)
    loop = asyncio.get_running_loop()

    def on_readable() -> None:
        try:
            data = control.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # the supervisor sends nothing today; ignore what a later one might
        loop.remove_reader(control.fileno())
        control.close()
        log.warning("the supervisor is gone: draining")
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(control.fileno(), on_readable)
