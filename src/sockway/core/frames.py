"""RFC 6455 server-to-client frame encoding.

Frames are built once and the same bytes are written to every recipient (DESIGN: encode once).
Server frames are never masked (RFC 6455 §5.1).
"""

from __future__ import annotations

import struct

_TEXT_FIN = 0x81


def text_frame_header(n: int) -> bytes:
    """The header of a final, unmasked text frame whose payload is ``n`` bytes."""
    if n < 126:
        return bytes((_TEXT_FIN, n))
    if n < 65536:
        return struct.pack("!BBH", _TEXT_FIN, 126, n)
    return struct.pack("!BBQ", _TEXT_FIN, 127, n)


def encode_text_frame(payload: bytes) -> bytes:
    """Return one complete, final, unmasked text frame carrying ``payload``."""
    return text_frame_header(len(payload)) + payload
