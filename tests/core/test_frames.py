"""RFC 6455 server frames (core/frames.py): header layout for every length class."""

from __future__ import annotations

import struct

import pytest

from sockway.core.frames import encode_text_frame


def parse_header(frame: bytes) -> tuple[int, int, bool, int, int]:
    """(fin+opcode byte, opcode, masked, payload length, header length) per RFC 6455 §5.2."""
    first, second = frame[0], frame[1]
    opcode = first & 0x0F
    masked = bool(second & 0x80)
    length = second & 0x7F
    offset = 2
    if length == 126:
        (length,) = struct.unpack("!H", frame[2:4])
        offset = 4
    elif length == 127:
        (length,) = struct.unpack("!Q", frame[2:10])
        offset = 10
    if masked:
        offset += 4
    return first, opcode, masked, length, offset


@pytest.mark.parametrize(
    ("length", "header_len", "length_byte"),
    [
        (0, 2, 0),
        (1, 2, 1),
        (125, 2, 125),
        (126, 4, 126),
        (127, 4, 126),
        (65535, 4, 126),
        (65536, 10, 127),
        (70000, 10, 127),
    ],
)
def test_text_frame_header(length: int, header_len: int, length_byte: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = encode_text_frame(payload)
    first, opcode, masked, parsed_len, offset = parse_header(frame)
    assert first == 0x81  # FIN set, RSV bits clear, opcode text
    assert first & 0x80
    assert first & 0x70 == 0
    assert opcode == 0x1
    assert not masked  # server frames are never masked (RFC 6455 §5.1)
    assert frame[1] == length_byte
    assert parsed_len == length
    assert offset == header_len
    assert len(frame) == header_len + length
    assert frame[offset:] == payload


def test_minimal_length_encoding() -> None:
    # RFC 6455 §5.2: the minimal number of bytes must be used to encode the length.
    assert encode_text_frame(b"x" * 125)[1] == 125
    assert encode_text_frame(b"x" * 126)[2:4] == b"\x00\x7e"
    assert encode_text_frame(b"x" * 65535)[2:4] == b"\xff\xff"
    assert encode_text_frame(b"x" * 65536)[2:10] == b"\x00\x00\x00\x00\x00\x01\x00\x00"


def test_exact_bytes_small() -> None:
    assert encode_text_frame(b"") == b"\x81\x00"
    assert encode_text_frame(b"hi") == b"\x81\x02hi"
    assert encode_text_frame("é".encode()) == b"\x81\x02\xc3\xa9"


def test_result_is_bytes() -> None:
    assert type(encode_text_frame(b"abc")) is bytes
    assert type(encode_text_frame(b"a" * 200)) is bytes


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_data_frames_are_text_for_utf8_and_binary_otherwise(n: int) -> None:
    from sockway.core.frames import encode_data_frame

    text = ("é" * n).encode()[:n] if n % 2 == 0 else b"a" * n
    frame = encode_data_frame(text)
    first, opcode, masked, length, offset = parse_header(frame)
    assert (first, opcode, masked, length) == (0x81, 1, False, n)
    blob = b"\xff" * n
    frame = encode_data_frame(blob)
    first, opcode, masked, length, offset = parse_header(frame)
    assert (opcode, length) == ((2, n) if n else (1, 0))
    assert frame[offset:] == blob


@pytest.mark.parametrize(
    "payload", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\xe2\x82"]
)
def test_invalid_utf8_is_never_a_text_frame(payload: bytes) -> None:
    from sockway.core.frames import encode_data_frame

    assert encode_data_frame(payload)[0] == 0x82
