"""The request-head reader the sniffer uses to pick a transport."""

from __future__ import annotations

import pytest

from sockway.transport.upgrade_head import BadHead, head_end, parse_head

UPGRADE = (
    b"GET /dev?a=1&b=%20x HTTP/1.1\r\n"
    b"Host: example:80\r\n"
    b"upgrade: WebSocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"X-Multi: one\r\n"
    b"x-multi: two\r\n"
    b"X-Latin: caf\xe9\r\n"
    b"\r\n"
)


def test_an_upgrade_head_is_read_with_its_headers_in_order() -> None:
    assert head_end(UPGRADE) == len(UPGRADE)
    assert head_end(UPGRADE[:-1]) == -1
    head = parse_head(UPGRADE)
    assert (head.method, head.path, head.query_string) == ("GET", "/dev", "a=1&b=%20x")
    assert head.is_websocket_upgrade()
    assert head.header("X-MULTI") == "one"
    assert [v for k, v in head.headers if k.lower() == "x-multi"] == ["one", "two"]
    assert head.header("x-latin") == "café"
    assert head.header("absent") is None


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /dev HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET /dev HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        b"GET /dev HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n",
    ],
)
def test_other_requests_are_not_upgrades(raw: bytes) -> None:
    assert not parse_head(raw).is_websocket_upgrade()


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /dev HTTP/1.0\r\nHost: x\r\n\r\n",  # only HTTP/1.1
        b"GET  /dev HTTP/1.1\r\nHost: x\r\n\r\n",  # request line
        b"GET /dev HTTP/1.1\r\nHost : x\r\n\r\n",  # whitespace before the colon
        b"GET /dev HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",  # obsolete line folding
        b"GET /dev HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET /d\xe9v HTTP/1.1\r\nHost: x\r\n\r\n",  # non-ASCII target
        b"GET /dev HTTP/1.1\r\nHost: x\r\n",  # incomplete
    ],
)
def test_malformed_heads_are_refused(raw: bytes) -> None:
    with pytest.raises(BadHead):
        parse_head(raw)
