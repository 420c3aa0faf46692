"""Malformed client requests are logged as one line, not a traceback (issue 13 item 12).

aiohttp answers them 400 and logs "Error handling request" with the whole traceback at ERROR;
a client's bad request is the peer's fault (DESIGN habit 3): one INFO line, no traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import StartGateway
from tests.e2e.support import api, handlers_dir

MALFORMED = [
    b"BAD\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
    b"POST /dev/@connections/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # TLS to the plain port
]


@pytest.mark.parametrize("keep_alive", [False, True])
async def test_malformed_requests_get_400_and_one_log_line_each(
    start_gateway: StartGateway,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    keep_alive: bool,
) -> None:
    caplog.set_level(logging.INFO)
    gw = await start_gateway({"apis": [api(handlers_dir(tmp_path))]})
    for request in MALFORMED:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        if keep_alive:  # after a good request on the same connection
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.write(request)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert b"400 Bad Request" in answer, (request, answer[:80])
    server = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert not [r for r in server if r.exc_info or r.levelno >= logging.WARNING], [
        (r.levelname, r.getMessage()) for r in server
    ]
    lines = [r.getMessage() for r in server if r.getMessage().startswith("malformed HTTP")]
    # BadHttpMethod on a connection's first request: aiohttp logs it at DEBUG already.
    assert len(lines) >= len(MALFORMED) - 2, lines
    assert all("\n" not in line and "127.0.0.1" in line and " 400 " in line for line in lines)
