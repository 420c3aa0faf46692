"""Listening sockets for the gateway's aiohttp server (and, through ``transport/sniffer.py``, for
the websocket APIs' picows transport).

- plain only, TLS only: ``loop.create_server`` with aiohttp's protocol factory;
- TLS and plain on one port (``tls`` without its own ``listen``): each accepted socket is
  peeked (MSG_PEEK, nothing consumed) and a TLS ClientHello (first byte 0x16) gets the TLS
  context, anything else is served plain. So ``ws://`` and ``wss://`` (and ``http``/``https``
  for ``@connections``) share one port, and ``domainName`` works for both kinds of client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Mapping

from sockway.transport.frame_guard import FrameGuard
from sockway.transport.sniffer import Sniffer, UpgradeHandler

log = logging.getLogger("sockway.listener")

_TLS_HANDSHAKE = 0x16
SNIFF_TIMEOUT_S = 10.0  # a client that connects and sends nothing is dropped after this


class ListenError(Exception):
    """The address cannot be listened on (in use, not permitted, ...)."""


def _bound(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"cannot listen on {host}:{port}: address already in use") from None
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


BACKLOG = 2048  # pending connections the kernel queues before accept (capped by somaxconn)


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket. ``reuse_port``: SO_REUSEPORT, so the worker processes of
    ``sockway serve --workers N`` all listen on one port and the kernel spreads new
    connections over them (issue 6)."""
    return listen_on(_bound(host, port, reuse_port=reuse_port))


def listen_on(sock: socket.socket) -> socket.socket:
    """Start listening on an already bound socket (one ``reserve_port`` made earlier, e.g.
    ``sockway serve --template … --port 0``, whose port the handlers' environment names)."""
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, *not listening* SO_REUSEPORT socket holding ``host:port`` for the workers.

    Not listening, it is in no accept group: it receives no connections, it only keeps the
    port ours while workers come and go. The port is first bound by a socket without
    SO_REUSEPORT, which fails if anything holds it — also another sockway's SO_REUSEPORT
    workers, which would otherwise silently share the port with ours — and resolves port 0 to
    a port that is really free.
    """
    probe = _bound(host, port, reuse_port=False)
    port = int(probe.getsockname()[1])
    probe.close()
    return _bound(host, port, reuse_port=True)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Listener:
    """One listening socket feeding an asyncio protocol factory (aiohttp's ``web.Server``).

    ``upgrades``: request paths whose WebSocket upgrades bypass aiohttp (``transport/sniffer.py``);
    without any, every connection goes straight to aiohttp.
    """

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        tls: ssl.SSLContext | None,
        sniff: bool,
        upgrades: Mapping[str, UpgradeHandler] | None = None,
    ) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self._factory: Callable[[], asyncio.Protocol]
        if upgrades:
            self._factory = lambda: Sniffer(factory, upgrades)
        else:
            self._factory = lambda: FrameGuard(factory())
        self._tls = tls
        self._sniff = sniff
        self._server: asyncio.AbstractServer | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._sniff:
            # ``backlog`` again: the loop calls listen() once more when it starts serving, with
            # its default of 100 — under a burst of new connections the kernel then dropped
            # SYNs, and each dropped one cost its client a 1 s retransmission (bench, connect).
            self._server = await loop.create_server(
                self._factory, sock=self.sock, ssl=self._tls, backlog=BACKLOG
            )
            return
        self._accept_task = loop.create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self.sock)
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    log.error("accept failed: %s (file descriptor limit); pausing 100 ms", exc)
                    await asyncio.sleep(0.1)
                    continue
                raise
            task = loop.create_task(self._serve(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        try:
            first = await asyncio.wait_for(self._peek(loop, conn), SNIFF_TIMEOUT_S)
        except (TimeoutError, OSError):
            conn.close()
            return
        if not first:
            conn.close()
            return
        tls = self._tls if first[0] == _TLS_HANDSHAKE else None
        try:
            await loop.connect_accepted_socket(self._factory, conn, ssl=tls)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection dropped during %s handshake: %s", "TLS" if tls else "setup", exc)
            conn.close()

    @staticmethod
    async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
        fd = conn.fileno()
        while True:
            try:
                return conn.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, _set_once, ready)
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)

    async def close(self) -> None:
        """Stop accepting; established connections are left to the caller."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            for task in list(self._pending):
                task.cancel()
        if self._server is not None:
            self._server.close()
        else:
            self.sock.close()
