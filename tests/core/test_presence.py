"""Presence membership deduplicated by user id (pusher spec §1.3)."""

from __future__ import annotations

from sockway.core.presence import Presence


def test_member_added_once_and_removed_with_the_last_socket():
    p = Presence()
    assert p.join("presence-a", "1.1", "u1", {"n": 1}) is True
    assert p.join("presence-a", "1.2", "u1", {"n": "other tab"}) is False
    assert p.join("presence-a", "2.1", 2, None) is True
    assert p.snapshot("presence-a") == (["u1", 2], {"u1": {"n": 1}, "2": None})
    assert p.user_count("presence-a") == 2
    assert p.leave("presence-a", "1.1", "u1") is None
    member = p.leave("presence-a", "1.2", "u1")
    assert member is not None and member.user_id == "u1"
    assert p.has_user("presence-a", "2") and p.has_user("presence-a", 2)
    assert p.leave("presence-a", "2.1", 2) is not None
    assert p.channel("presence-a") is None  # nothing left behind
    assert p.leave("presence-a", "9.9", "x") is None
    assert p.snapshot("presence-a") == ([], {})
