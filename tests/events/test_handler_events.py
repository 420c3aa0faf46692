"""Handler answers → broadcast / failed / errors (appsync-events spec §6.2, §6.3, §3.5)."""

from __future__ import annotations

import pytest

from sockway.events.handler_events import (
    IncomingEvent,
    authorizer_answer,
    publish_answer,
    subscribe_answer,
)
from sockway.events.wire import EventsError, data_frame, encode_event

EVENTS = [IncomingEvent("a", 0, '{"x":1}'), IncomingEvent("b", 1, '"two"')]


def test_transform_fail_and_drop() -> None:
    out = publish_answer(
        {"events": [{"id": "b", "payload": {"y": 2}}, {"id": "a", "error": "no"}]}, EVENTS
    )
    assert out.broadcast == ['{"y":2}']
    assert out.failed == [{"identifier": "a", "index": 0, "message": "no", "errorMessage": "no"}]
    assert out.successful == [{"identifier": "b", "index": 1}]
    dropped = publish_answer({"events": []}, EVENTS)
    assert dropped.broadcast == [] and len(dropped.successful) == 2
    assert publish_answer({"events": [None, {"id": "a", "payload": 1}]}, EVENTS).broadcast == ["1"]


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"error": "boom"}, 403),
        ({"events": [{"id": "zzz", "payload": 1}]}, 500),
        ({"events": [{"id": "a", "payload": 1}, {"id": "a", "payload": 2}]}, 500),
        ({"events": "nope"}, 500),
        ("text", 500),
    ],
)
def test_whole_publish_failures(answer: object, status: int) -> None:
    with pytest.raises(EventsError) as info:
        publish_answer(answer, EVENTS)
    assert info.value.error_type == "HandlerExecutionError" and info.value.status == status


def test_subscribe_answers() -> None:
    subscribe_answer(None)
    with pytest.raises(EventsError) as info:
        subscribe_answer({"error": "ValueError - boom"})
    assert info.value.message == "ValueError - boom"
    with pytest.raises(EventsError) as info:
        subscribe_answer({"ok": True})
    assert (info.value.error_type, info.value.message) == (
        "HandlerExecutionError",
        "Unable to process request",
    )


def test_authorizer_answers() -> None:
    assert authorizer_answer(
        {"isAuthorized": True, "handlerContext": {"u": 1}, "ttlOverride": 5}
    ).context == {"u": 1}
    assert authorizer_answer({"isAuthorized": True, "resolverContext": {"u": 2}}).context == {
        "u": 2
    }
    assert not authorizer_answer({"isAuthorized": "yes"}).authorized
    assert not authorizer_answer(None).authorized


def test_data_frame_carries_the_event_as_a_json_string() -> None:
    assert (
        data_frame("s-1", encode_event('{"a":"\\u00e9"}'))
        == b'{"type":"data","id":"s-1","event":"{\\"a\\":\\"\\\\u00e9\\"}"}'
    )
