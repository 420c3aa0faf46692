"""The load generator's HTTP side (``loadgen.py``): a minimal HTTP/1.1 keep-alive client and
the publish request of each front door (issue 7: each API is published through its own path).

``publisher`` wraps the fan-out message as the API's HTTP publish expects: ``raw`` (websocket-API
``POST /{stage}/@channels/{name}``), ``appsync`` (``POST /event`` ``{"channel", "events":
["<json string>"]}`` with ``x-api-key``), ``pusher`` (``POST /apps/{id}/events`` signed as the
pusher SDKs sign: ``auth_key``, ``auth_timestamp``, ``auth_version=1.0``, ``body_md5`` and the
HMAC-SHA256 ``auth_signature``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlsplit


class HttpConn(asyncio.Protocol):
    """One keep-alive connection; requests may be pipelined; answers parsed by Content-Length."""

    def __init__(self, on_answer: Any) -> None:
        self.on_answer = on_answer
        self.buf = bytearray()
        self.pending = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def request(self, raw: bytes) -> None:
        self.pending += 1
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop > 0 else None])
            total = end + 4 + length
            if len(buf) < total:
                return
            status = int(head[9:12])
            del buf[:total]
            self.pending -= 1
            self.on_answer(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_answer(self, -1)


def http_request(
    host: str, path: str, body: bytes, ctype: str = "application/octet-stream", extra: str = ""
) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def pusher_signed_path(path: str, body: bytes, key: str, secret: str) -> str:
    """``path?auth_key=..&auth_timestamp=..&auth_version=1.0&body_md5=..&auth_signature=..``:
    HMAC-SHA256 (hex) of ``POST\\n<path>\\n<sorted query>``, as the pusher SDKs sign."""
    query = (
        f"auth_key={key}&auth_timestamp={int(time.time())}&auth_version=1.0"
        f"&body_md5={hashlib.md5(body).hexdigest()}"
    )
    signature = hmac.new(
        secret.encode(), f"POST\n{path}\n{query}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{path}?{query}&auth_signature={signature}"


def publisher(a: argparse.Namespace, host: str) -> Any:
    """``message -> raw HTTP request`` for ``--publish-kind`` (the API's own publish path)."""
    if a.publish_kind == "appsync":
        head = b'{"channel":' + json.dumps(a.channel).encode() + b',"events":["\\"'
        extra = f"x-api-key: {a.api_key}\r\n"
        return lambda m: http_request(
            host, a.http_path, head + m + b'\\""]}', "application/json", extra
        )
    if a.publish_kind == "pusher":
        head = b'{"name":"m","channel":' + json.dumps(a.channel).encode() + b',"data":"'

        def pusher(m: bytes) -> bytes:
            body = head + m + b'"}'
            path = pusher_signed_path(a.http_path, body, a.app_key, a.secret)
            return http_request(host, path, body, "application/json")

        return pusher
    return lambda m: http_request(host, a.http_path, m)


async def http_conns(url: str, n: int, on_answer: Any, src: str | None) -> list[HttpConn]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    extra = {"local_addr": (src, 0)} if src else {}
    conns = []
    for _ in range(n):
        _, proto = await loop.create_connection(
            lambda: HttpConn(on_answer), parts.hostname, parts.port, **extra
        )
        conns.append(proto)
    return conns
