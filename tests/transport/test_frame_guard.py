"""FrameGuard's header walk over arbitrarily chunked byte streams."""

from __future__ import annotations

import asyncio
import random
import struct

from sockway.transport.frame_guard import FrameGuard


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


def frame(opcode: int, length: int, masked: bool = True) -> bytes:
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, (0x80 if masked else 0) | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, (0x80 if masked else 0) | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, (0x80 if masked else 0) | 127, length)
    return head + (b"MASK" if masked else b"") + b"p" * length


def feed(stream: bytes, limit: int | None, seed: int) -> tuple[bytes, list[tuple[int, str]]]:
    inner = Inner()
    guard = FrameGuard(inner)
    tripped: list[tuple[int, str]] = []
    guard.arm(limit, lambda code, reason: tripped.append((code, reason)))
    rng = random.Random(seed)
    pos = 0
    while pos < len(stream):
        size = rng.choice([1, 2, 3, 7, 13, 100, 5000])
        guard.data_received(stream[pos : pos + size])
        pos += size
    return bytes(inner.data), tripped


def test_frames_within_the_limit_pass_unchanged_under_any_chunking() -> None:
    stream = b"".join(
        frame(op, n) for op, n in [(1, 0), (1, 125), (1, 126), (9, 5), (0, 300), (1, 32768)]
    )
    for seed in range(50):
        passed, tripped = feed(stream, 32768, seed)
        assert passed == stream and not tripped


def test_first_oversize_data_frame_trips_and_nothing_after_passes() -> None:
    good = frame(1, 100) + frame(1, 65535)
    bad = frame(0, 70000)  # a continuation frame counts too
    for seed in range(50):
        passed, tripped = feed(good + bad + frame(1, 10), 65535, seed)
        assert tripped == [(1009, "Frame too big")]
        # Only bytes before the chunk holding the bad header were passed on.
        assert good.startswith(passed)


def test_unarmed_guard_forwards_everything() -> None:
    inner = Inner()
    guard = FrameGuard(inner)
    guard.data_received(b"GET / HTTP/1.1\r\n\r\n" + frame(1, 100000))
    assert inner.data.startswith(b"GET / HTTP/1.1")
    assert len(inner.data) == 18 + 10 + 4 + 100000


def test_one_whole_frame_per_read_is_checked_too() -> None:
    """The usual case (each read holds exactly one frame) takes a shortcut; same verdicts."""
    cases = [
        (frame(1, 100), 100, False),
        (frame(1, 101), 100, True),
        (frame(2, 101, masked=False), 100, True),
        (frame(2, 10, masked=False), 100, True),  # unmasked (RFC 6455 §5.1)
        (frame(9, 0, masked=False), 100, True),
        (frame(9, 120), 100, False),  # control frames are not data frames
        (frame(1, 300), 300, False),
        (frame(1, 301), 300, True),
        (frame(0, 301), 300, True),
        (frame(1, 70000), 65536, True),  # 64-bit length: the general walk
    ]
    for data, limit, trips in cases:
        for prefix in (b"", frame(1, 5)):  # also right after another whole frame
            inner = Inner()
            guard = FrameGuard(inner)
            tripped: list[bool] = []
            guard.arm(limit, lambda code, reason: tripped.append(True))  # noqa: B023
            if prefix:
                guard.data_received(prefix)
            guard.data_received(data)
            assert bool(tripped) is trips, (len(data), limit)
            assert bytes(inner.data) == prefix + (b"" if trips else data)
        # a frame split over two reads after the shortcut keeps the walk's state right
        inner = Inner()
        guard = FrameGuard(inner)
        tripped = []
        guard.arm(limit, lambda code, reason: tripped.append(True))  # noqa: B023
        guard.data_received(frame(1, 5) + data[:3])
        guard.data_received(data[3:])
        assert bool(tripped) is trips


def test_an_unmasked_frame_trips_1002_under_any_chunking() -> None:
    # Issue 13 item 10: aiohttp's reader accepts unmasked client frames.
    good = frame(1, 100) + frame(9, 3) + frame(1, 300)
    for bad in (frame(1, 5, masked=False), frame(8, 2, masked=False), frame(0, 70000, False)):
        for seed in range(30):
            passed, tripped = feed(good + bad + frame(1, 10), None, seed)
            assert tripped == [(1002, "Protocol error")]
            assert good.startswith(passed)


def test_masking_only_has_no_size_limit() -> None:
    stream = frame(1, 100) + frame(2, 200000) + frame(0, 70000)
    for seed in range(10):
        passed, tripped = feed(stream, None, seed)
        assert passed == stream and not tripped
