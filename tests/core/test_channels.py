"""Channel naming rules and wildcard matching (appsync-events spec §4)."""

from __future__ import annotations

import pytest

from sockway.core.channels import InvalidChannel, SubscriptionIndex, parse_channel


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("default/channel", "/default/channel"),
        ("/default/channel/", "/default/channel"),
        ("/news", "/news"),
        ("/a/b/c/d/e", "/a/b/c/d/e"),
        ("/A-1/" + "x" * 50, "/A-1/" + "x" * 50),
    ],
)
def test_valid_channels_are_normalised(raw: str, path: str) -> None:
    assert parse_channel(raw, allow_wildcard=False).path == path


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/",
        "//",
        "/a//b",
        "/a/b/c/d/e/f",
        "/-a",
        "/a-",
        "/a/" + "x" * 51,
        "/a b",
        "/a/*",
        "/a/b_c",
        7,
    ],
)
def test_invalid_publish_channels(raw: object) -> None:
    with pytest.raises(InvalidChannel):
        parse_channel(raw, allow_wildcard=False)


@pytest.mark.parametrize("raw", ["/*", "/a/*/b", "/a/b*", "/a/**", "/a/b/c/d/e/*"])
def test_invalid_wildcards(raw: str) -> None:
    with pytest.raises(InvalidChannel):
        parse_channel(raw, allow_wildcard=True)


def test_wildcard_counts_as_a_segment() -> None:
    channel = parse_channel("/a/b/c/d/*", allow_wildcard=True)
    assert channel.wildcard and channel.prefix == "/a/b/c/d" and channel.namespace == "a"


def test_matching_is_multi_level_prefix_and_once_per_subscription() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    for name, raw in [
        ("exact", "/ns/a/b"),
        ("ns", "/ns/*"),
        ("a", "/ns/a/*"),
        ("ab", "/ns/a/b/*"),
        ("root", "/ns"),
        ("other", "/x/*"),
    ]:
        index.add(parse_channel(raw, allow_wildcard=True), name)
    match = lambda raw: list(index.match(parse_channel(raw, allow_wildcard=False)))  # noqa: E731
    assert match("/ns/a/b") == ["exact", "ns", "a"]
    assert match("/ns/a/b/c") == ["ns", "a", "ab"]
    assert match("/ns") == ["root"]  # /ns/* does not match /ns itself
    assert match("/ns/z") == ["ns"]
    index.remove(parse_channel("/ns/*", allow_wildcard=True), "ns")
    assert match("/ns/z") == []
    assert len(index) == 5


def test_keys_report_first_and_last_subscription_and_list_their_members() -> None:
    """Issue 6: a node holds one broker key per subscription key; a publication that matched
    one key on another node reaches only that key's subscriptions here."""
    index: SubscriptionIndex[str] = SubscriptionIndex()
    exact = parse_channel("/ns/a", allow_wildcard=True)
    wild = parse_channel("/ns/a/*", allow_wildcard=True)
    assert index.add(exact, "e1") is True
    assert index.add(exact, "e2") is False
    assert index.add(wild, "w1") is True
    assert index.members_of("/ns/a") == ["e1", "e2"]
    assert index.members_of("/ns/a/*") == ["w1"]
    assert index.members_of("/ns/*") == [] and index.members_of("/ns/b") == []
    assert index.remove(exact, "nobody") is False
    assert index.remove(exact, "e1") is False
    assert index.remove(exact, "e2") is True
    assert index.remove(wild, "w1") is True and len(index) == 0
