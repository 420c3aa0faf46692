"""The gateway's listening socket keeps a burst of new connections queued."""

from __future__ import annotations

import asyncio
import select
import socket
import time

from sockway.transport.listener import Listener, bind_socket

BURST = 300  # more than the loop's default backlog of 100, fewer than somaxconn


async def test_a_burst_of_connections_is_queued_while_the_loop_is_busy() -> None:
    """With the loop busy (nothing accepted), every handshake of the burst still completes:
    the kernel queues them. With the default backlog of 100 that ``loop.create_server``
    re-applied, the rest of the SYNs were dropped and each of those clients waited 1 s for its
    retransmission (bench, connect rate)."""
    listener = Listener(bind_socket("127.0.0.1", 0), asyncio.Protocol, None, sniff=False)
    await listener.start()
    clients = []
    try:
        for _ in range(BURST):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", listener.port))
            clients.append(c)
        time.sleep(0.3)  # the event loop is blocked: no accept() runs meanwhile
        _, connected, _ = select.select([], clients, [], 0)
        assert len(connected) == BURST
        assert all(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for c in connected)
    finally:
        for c in clients:
            c.close()
        await listener.close()
