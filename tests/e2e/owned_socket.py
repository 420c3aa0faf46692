"""Clients on sockets the test owns, for faults that need an exact order on the wire.

``reset()`` of a ``websockets`` client (``transport.abort()``) sends its RST only when the event
loop closes the handle, after this iteration's writes went out; here ``OwnedWs.reset`` sends it
at once and ``send_now`` writes a frame into the kernel at once. A test can so put a request on
the wire *before* (or after) a batch of resets, and the gateway reads them in that order in one
poll (issue 13 item 1: a fan-out that runs after a reset was read, before the connection's end
was processed, meets transports that are already closed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

from tests.e2e.appsync_support import API_KEY, SUBPROTOCOL, header_subprotocol
from tests.e2e.rawws import RawClient


class OwnedSocket:
    """A non-blocking socket driven by ``loop.sock_*``; nothing else holds its descriptor."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    @classmethod
    async def open(cls, port: int) -> OwnedSocket:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock)

    def send_now(self, data: bytes) -> None:
        """Into the kernel now (small writes on a fresh socket never block)."""
        assert self.sock.send(data) == len(data)

    async def _fill(self) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        self.buf += data

    async def until(self, marker: bytes) -> bytes:
        while (end := self.buf.find(marker)) < 0:
            await self._fill()
        head = bytes(self.buf[: end + len(marker)])
        del self.buf[: end + len(marker)]
        return head

    async def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def answer(self, timeout: float = 10) -> tuple[int, bytes]:
        """One HTTP/1.1 answer with a ``Content-Length``: its status and body."""
        async with asyncio.timeout(timeout):
            head = (await self.until(b"\r\n\r\n")).decode("latin-1")
            length = None
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            assert length is not None, head
            return int(head.split(" ")[1]), await self.exactly(length)

    def reset(self) -> None:
        """A TCP RST now (SO_LINGER 0), as a crashed client sends."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class OwnedWs(OwnedSocket):
    """A WebSocket client (RFC 6455 framing from ``RawClient``) on an owned socket."""

    @classmethod
    async def upgrade(
        cls, port: int, path: str, protocols: list[str] | None = None, keep_alive: bool = False
    ) -> OwnedWs:
        """``keep_alive``: a ``GET /health`` is answered first on the connection, so the upgrade
        is its second request, served by aiohttp (not picows): there the connection's end runs
        a few loop steps after its transport closed, as for a Pusher socket on either path."""
        client = cls((await OwnedSocket.open(port)).sock)
        loop = asyncio.get_running_loop()
        if keep_alive:
            await loop.sock_sendall(
                client.sock, f"GET /health HTTP/1.1\r\nHost: x:{port}\r\n\r\n".encode()
            )
            await client.answer()
        key = base64.b64encode(os.urandom(16)).decode()
        extra = f"Sec-WebSocket-Protocol: {', '.join(protocols)}\r\n" if protocols else ""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
        await loop.sock_sendall(client.sock, request.encode())
        head = await client.until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return client

    def send_text_now(self, text: str) -> None:
        self.send_now(RawClient.encode_frame(0x1, text.encode()))

    async def read_text(self, timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            while True:
                b1, b2 = await self.exactly(2)
                n = b2 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.exactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.exactly(8))
                payload = await self.exactly(n)
                if b1 & 0x0F == 0x1:
                    return payload.decode()


class OwnedEvents(OwnedWs):
    """An AppSync Events realtime client (API key auth) on an owned socket."""

    @classmethod
    async def connect_events(cls, port: int, keep_alive: bool = False) -> OwnedEvents:
        auth = header_subprotocol({"host": f"127.0.0.1:{port}", "x-api-key": API_KEY})
        raw = await OwnedWs.upgrade(port, "/event/realtime", [SUBPROTOCOL, auth], keep_alive)
        client = cls(raw.sock)
        client.buf = raw.buf
        client.send_text_now(json.dumps({"type": "connection_init"}))
        assert (await client.recv())["type"] == "connection_ack"
        return client

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        """The next frame that is not a keep-alive."""
        while True:
            frame: dict[str, Any] = json.loads(await self.read_text(timeout))
            if frame.get("type") != "ka":
                return frame

    async def subscribe(self, sub_id: str, channel: str) -> None:
        self.send_text_now(json.dumps(subscribe_frame(sub_id, channel)))
        answer = await self.recv()
        assert answer == {"type": "subscribe_success", "id": sub_id}, answer


def subscribe_frame(sub_id: str, channel: str) -> dict[str, Any]:
    return {
        "type": "subscribe",
        "id": sub_id,
        "channel": channel,
        "authorization": {"x-api-key": API_KEY},
    }


def publish_frame(op_id: str, channel: str, events: list[Any]) -> dict[str, Any]:
    return {
        "type": "publish",
        "id": op_id,
        "channel": channel,
        "events": [json.dumps(e) for e in events],
        "authorization": {"x-api-key": API_KEY},
    }


def http_post(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """One HTTP/1.1 POST, ready for ``send_now`` (the connection closes after the answer)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def http_answer(conn: OwnedSocket, timeout: float = 10) -> tuple[int, bytes]:
    """The answer on ``conn``, then the connection is closed."""
    status, body = await conn.answer(timeout)
    conn.sock.close()
    return status, body
