"""The HTTP API's one-second rate windows (pusher spec §3.3, §5.6)."""

from __future__ import annotations

import pytest

from sockway.pusher.http_api import HttpError, _Window


def test_unlimited_has_no_headers():
    assert _Window(-1).take(1000, 0.0) == {}


def test_points_per_window_then_429_with_headers():
    window = _Window(3)
    assert window.take(2, 10.0) == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "1"}
    with pytest.raises(HttpError) as info:
        window.take(2, 10.25)
    assert info.value.status == 429
    assert info.value.headers == {
        "Retry-After": "0.750",
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "1",
    }
    assert window.take(1, 10.5)["X-RateLimit-Remaining"] == "0"
    assert window.take(3, 11.0)["X-RateLimit-Remaining"] == "0"  # a new second
