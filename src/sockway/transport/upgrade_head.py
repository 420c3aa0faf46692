"""The head of an HTTP/1.1 request, read before any HTTP framework sees the connection.

The listener's sniffer (``transport/sniffer.py``) reads the first request of every new connection
far enough to know whether it is a WebSocket upgrade for a path served on the fast WebSocket
transport. Only upgrade GETs are parsed here (RFC 7230 §3: request line, header fields, no
body); everything else goes to aiohttp untouched, with the bytes read so far.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_MAX_BYTES = 16 * 1024  # a longer head is left to aiohttp, which answers 431/400
_TOKEN_END = b" \t:"


class BadHead(ValueError):
    """The bytes are not a well-formed HTTP/1.1 request head (the client's fault: 400)."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str  # the request target as sent: path and query, still percent-encoded
    headers: tuple[tuple[str, str], ...]  # original casing and order, latin-1 decoded

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query_string(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def has_token(self, name: str, token: str) -> bool:
        """Whether the comma-separated header ``name`` lists ``token`` (case-insensitive),
        over all its occurrences (RFC 7230 §6.1 ``Connection: keep-alive, Upgrade``)."""
        lower, wanted = name.lower(), token.lower()
        return any(
            part.strip().lower() == wanted
            for key, value in self.headers
            if key.lower() == lower
            for part in value.split(",")
        )

    def is_websocket_upgrade(self) -> bool:
        """RFC 6455 §4.2.1 items 1, 3 and 4: a GET asking to upgrade to ``websocket``."""
        return (
            self.method == "GET"
            and self.has_token("Upgrade", "websocket")
            and self.has_token("Connection", "upgrade")
        )


def head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    return -1 if end < 0 else end + 4


def parse_head(raw: bytes | bytearray) -> RequestHead:
    """Parse a complete head (``raw`` ends with the blank line). Raises ``BadHead``.

    Strict where leniency would let two parsers disagree about the same bytes (RFC 7230 §3.2.4:
    no whitespace before the colon, no obsolete line folding).
    """
    lines = bytes(raw).split(b"\r\n")
    if len(lines) < 3 or lines[-1] or lines[-2]:
        raise BadHead("incomplete request head")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadHead("malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1":
        raise BadHead("only HTTP/1.1 upgrades are served here")
    headers: list[tuple[str, str]] = []
    for line in lines[1:-2]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in _TOKEN_END or line[:1] in (b" ", b"\t"):
            raise BadHead("malformed header line")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    try:
        return RequestHead(method.decode("ascii"), target.decode("ascii"), tuple(headers))
    except UnicodeDecodeError:
        raise BadHead("non-ASCII request line") from None
