"""RFC 6455 server-to-client frame encoding.

Frames are built once and the same bytes are written to every recipient (DESIGN: encode once).
Server frames are never masked (RFC 6455 §5.1).
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81
_BINARY_FIN = 0x82


def _header(first: int, n: int) -> bytes:
    if n < 126:
        return bytes((first, n))
    if n < 65536:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)


def text_frame_header(n: int) -> bytes:
    """The header of a final, unmasked text frame whose payload is ``n`` bytes."""
    return _header(_TEXT_FIN, n)


def is_utf8(payload: bytes) -> bool:
    """Whether ``payload`` may be a text frame's payload (RFC 6455 §5.6: valid UTF-8 only)."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_binary_frame(payload: bytes) -> bytes:
    """Return one complete, final, unmasked binary frame carrying ``payload``."""
    return _header(_BINARY_FIN, len(payload)) + payload


def encode_data_frame(payload: bytes) -> bytes:
    """A text frame when ``payload`` is UTF-8, else a binary frame: bytes from an API caller
    (``@connections``, ``@channels``) never put invalid UTF-8 in a text frame, which a
    conforming client must fail with 1007 (RFC 6455 §8.1)."""
    if is_utf8(payload):
        return encode_text_frame(payload)
    return encode_binary_frame(payload)


def encode_text_frame(payload: bytes) -> bytes:
    """Return one complete, final, unmasked text frame carrying ``payload``."""
    return text_frame_header(len(payload)) + payload
