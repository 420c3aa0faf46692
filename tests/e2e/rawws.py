"""A minimal raw WebSocket client for tests that need exact control of the frames on the wire
(an empty close frame, a client that never reads). Everything else uses ``websockets``."""

from __future__ import annotations

import asyncio
import base64
import os
import struct


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str,
        read_limit: int | None = None,
        after: str | None = None,
        drip: bool = False,
        extra_headers: str = "",
        version: str = "13",
    ) -> RawClient:
        """``after``: a plain GET of that path is sent and answered first on the same
        connection, so the upgrade is its second request (served by aiohttp, not picows).
        ``drip``: the upgrade request is written one byte at a time."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if after is not None:
            writer.write(f"GET {after} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            await read_http_answer(reader)
        if read_limit is not None:
            # Shrink the kernel receive buffer so a non-reading client backs up quickly.
            import socket

            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, read_limit)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra_headers}\r\n"
        ).encode()
        if drip:
            for i in range(len(request)):
                writer.write(request[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)
        else:
            writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"handshake failed: {head!r}")
        return cls(reader, writer)

    def send_frame(
        self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True
    ) -> None:
        self.writer.write(self.encode_frame(opcode, payload, fin, rsv, masked))

    @staticmethod
    def encode_frame(
        opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, masked: bool = True
    ) -> bytes:
        """One frame; ``rsv`` is the RSV1-3 bits as a number 0-7 (RFC 6455 §5.2), ``masked``
        False sends the payload unmasked (a violation for a client)."""
        first = (0x80 if fin else 0) | (rsv & 7) << 4 | opcode
        bit = 0x80 if masked else 0
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", first, bit | n)
        elif n < 65536:
            head = struct.pack("!BBH", first, bit | 126, n)
        else:
            head = struct.pack("!BBQ", first, bit | 127, n)
        if not masked:
            return head + payload
        mask = os.urandom(4)
        masked_payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked_payload

    async def read_close(self, timeout: float = 5.0) -> int | None:
        """Read frames until the server's close frame: its code (None when it carried none),
        or raise when the connection ends without one."""
        while True:
            opcode, payload = await asyncio.wait_for(self.read_frame(), timeout)
            if opcode == 8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None

    async def read_frame(self) -> tuple[int, bytes]:
        b1, b2 = await self.reader.readexactly(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return b1 & 0x0F, await self.reader.readexactly(n)

    def close(self) -> None:
        self.writer.close()


async def read_http_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a ``Content-Length``: (status, body)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return int(head.split(" ")[1]), await reader.readexactly(length)
