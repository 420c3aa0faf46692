"""``sockway serve --workers N``: N gateway processes on one port (issue 6).

The supervisor serves nothing itself. It

- reserves the port(s): a bound, not listening SO_REUSEPORT socket per listener, kept open for
  its whole life, so port 0 is resolved once and every worker (and every restarted worker)
  binds the same port (``listener.reserve_port``; a project's ``--port 0`` hands over the
  reservation ``projects.launch`` made);
- creates the development CA (``tls: {certificate: auto}``) once, before any worker starts,
  so workers only read it;
- starts N workers (``python -m sockway serve … --worker-fd FD``), each a complete gateway
  listening on the same port with SO_REUSEPORT; the kernel spreads new connections over them,
  and the broker joins them into one gateway;
- prints the banner once every worker is ready (each reports its banner over a socketpair);
- restarts a worker that exits: at once after a healthy run, with exponential backoff while it
  keeps dying within ``STARTUP_WINDOW_S`` of its start;
- on SIGTERM/SIGINT forwards SIGTERM to every worker (each drains as a single gateway does) and
  exits when all have exited: status 0 when they all drained cleanly.

If a worker fails during the first start (a port in use, a broken handler), the supervisor
stops the others and exits 1: the worker's own error message is on stderr. The socketpair is
also the workers' lifeline: a worker whose supervisor died (even SIGKILL) sees EOF and drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from sockway.gateway.settings import Settings, parse_hostport
from sockway.transport.listener import reserve_port
from sockway.transport.tls import auto_certificate

log = logging.getLogger("sockway.supervisor")

# A worker that exits sooner than this after it was started counts as failing at start-up.
STARTUP_WINDOW_S = 10.0
# Restart delays of a worker failing at start-up: 0.5 s, 1 s, 2 s, … up to 30 s.
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# On shutdown, a worker still running this long after shutdown_grace_s is killed.
KILL_AFTER_GRACE_S = 10.0

# (control fd, listen port, TLS listen port or None) → the worker's command line.
WorkerArgv = Callable[[int, int, int | None], list[str]]


@dataclass
class _Slot:
    index: int
    proc: asyncio.subprocess.Process | None = None
    failures: int = 0  # consecutive start-up failures
    ready: bool = False
    banner: list[str] = field(default_factory=list)  # as the worker would print it


def backoff_s(failures: int) -> float:
    """Delay before restarting a worker after ``failures`` consecutive start-up failures."""
    if failures <= 0:
        return 0.0
    return float(min(INITIAL_BACKOFF_S * 2 ** (failures - 1), MAX_BACKOFF_S))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Runs ``workers`` gateway processes until SIGTERM/SIGINT; ``run()`` returns the status."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        argv: WorkerArgv,
        header: str = "sockway",
        reserved: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        # ``settings.listen`` reserved already (``listener.reserve_port``, project mode's
        # ``--port 0``): kept as the main port's reservation instead of reserving again.
        self._reserved = reserved
        self.workers = workers
        self._argv = argv
        self._header = header
        self._slots = [_Slot(i + 1) for i in range(workers)]
        self._stop = asyncio.Event()
        self._all_ready = asyncio.Event()
        self._startup_failed = False
        self.port = 0
        self.tls_port: int | None = None

    # -- before the workers ----------------------------------------------------------------

    def _reserve(self) -> list[socket.socket]:
        host, port = parse_hostport(self.settings.listen)
        held = [self._reserved if self._reserved is not None else reserve_port(host, port)]
        self.port = int(held[0].getsockname()[1])
        tls = self.settings.tls
        if tls is not None and tls.listen is not None:
            thost, tport = parse_hostport(tls.listen)
            held.append(reserve_port(thost, tport))
            self.tls_port = int(held[1].getsockname()[1])
        return held

    def _prepare_tls(self) -> None:
        """Create (or renew) the development CA once, so workers never race to write it."""
        tls = self.settings.tls
        if tls is None or tls.certificate != "auto":
            return
        auto_certificate(self.settings.state_dir, self.settings.auto_tls_hosts())

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> int:
        held = self._reserve()  # ListenError propagates: nothing started yet
        try:
            self._prepare_tls()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            tasks = [loop.create_task(self._run_slot(slot)) for slot in self._slots]
            ready = loop.create_task(self._all_ready.wait())
            stop = loop.create_task(self._stop.wait())
            await asyncio.wait([ready, stop], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if self._all_ready.is_set() and not self._stop.is_set():
                self._print_banner()
            await stop
            return await self._shutdown(tasks)
        finally:
            for sock in held:
                sock.close()

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> int:
        live = [s.proc for s in self._slots if s.proc is not None and s.proc.returncode is None]
        log.info("shutting down: draining %d workers", len(live))
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        timeout = self.settings.shutdown_grace_s + KILL_AFTER_GRACE_S
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:
            for slot in self._slots:
                if slot.proc is not None and slot.proc.returncode is None:
                    log.error("worker %d (pid %d) still runs: killed", slot.index, slot.proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        slot.proc.kill()
            await asyncio.wait(pending)
        # The status tells how the drain went: every worker running at the stop drained cleanly
        # (one stopped by the signal before it could install its handler counts as clean).
        clean = (0, -signal.SIGTERM, -signal.SIGINT)
        drained = all(proc.returncode in clean for proc in live)
        return 0 if drained and not pending and not self._startup_failed else 1

    def _print_banner(self) -> None:
        head = f"{self._header} listening: {self.workers} workers (supervisor pid {os.getpid()})"
        print("\n".join([head, *self._slots[0].banner[1:]]), flush=True)

    async def _run_slot(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            parent, child = socket.socketpair()
            try:
                with child:
                    argv = self._argv(child.fileno(), self.port, self.tls_port)
                    proc = await asyncio.create_subprocess_exec(
                        *argv, pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL
                    )
                slot.proc = proc
                if self._stop.is_set():  # the stop came while it was being spawned
                    proc.send_signal(signal.SIGTERM)
                code = await self._watch(slot, proc, parent)
                what = f"worker {slot.index} (pid {proc.pid})"
                how = describe_exit(code)
            except OSError as exc:  # no process at all (fork/exec failed: EMFILE, ENOMEM, …)
                slot.ready = False
                what, how = f"worker {slot.index}", f"not started: {exc}"
            finally:
                parent.close()
            if self._stop.is_set():
                log.info("%s exited: %s", what, how)
                return
            if not self._all_ready.is_set():
                log.error("%s failed to start (%s)", what, how)
                self._startup_failed = True
                self._stop.set()
                return
            healthy = slot.ready and loop.time() - started >= STARTUP_WINDOW_S
            slot.failures = 0 if healthy else slot.failures + 1
            delay = backoff_s(slot.failures)
            log.warning("%s exited (%s); restarting it in %.1f s", what, how, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _watch(
        self, slot: _Slot, proc: asyncio.subprocess.Process, control: socket.socket
    ) -> int:
        """Wait for the worker's ready report (its banner), then for its exit; the status."""
        slot.ready = False
        reader, writer = await asyncio.open_connection(sock=control)
        try:
            line = await reader.readline()  # b"" if the worker exits before it is ready
            if line:
                slot.ready = True
                slot.banner = [str(x) for x in orjson.loads(line)]
                if self._all_ready.is_set():
                    log.info("worker %d restarted (pid %d)", slot.index, proc.pid)
                elif all(s.ready for s in self._slots):
                    self._all_ready.set()
            return await proc.wait()
        finally:
            writer.close()


def supervise(
    settings: Settings,
    workers: int,
    argv: WorkerArgv,
    header: str,
    reserved: socket.socket | None = None,
) -> int:
    """Run the supervisor in its own event loop; the process's exit status."""
    supervisor = Supervisor(settings, workers, argv, header, reserved)
    try:
        return asyncio.run(supervisor.run())
    finally:
        sys.stdout.flush()
