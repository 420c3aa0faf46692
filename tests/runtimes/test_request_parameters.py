"""HTTP_PROXY request parameter mapping (``runtimes.request_parameters``; AWS "Set up data
mapping for WebSocket APIs"): what parses, what is refused, what each source yields."""

from __future__ import annotations

from typing import Any

import pytest

from sockway.runtimes.request_parameters import (
    RequestParameterError,
    connect_only,
    evaluate,
    parse_mapping,
)

CONNECT: dict[str, Any] = {
    "headers": {"Host": "h", "X-Token": "abc", "Accept": "b"},
    "multiValueHeaders": {"Host": ["h"], "X-Token": ["abc"], "Accept": ["a", "b"]},
    "queryStringParameters": {"room": "r2", "tag": "y"},
    "multiValueQueryStringParameters": {"room": ["r2"], "tag": ["x", "y"]},
    "stageVariables": {"env": "prod"},
    "requestContext": {
        "routeKey": "$connect",
        "eventType": "CONNECT",
        "connectionId": "Abc123=",
        "requestId": "req-1",
        "domainName": "127.0.0.1:9",
        "stage": "live",
        "apiId": "abcdefghij",
        "connectedAt": 1700000000000,
        "identity": {"sourceIp": "10.0.0.1"},
        "authorizer": {"principalId": "alice", "tier": "gold", "n": 3},
    },
}
MESSAGE: dict[str, Any] = {
    "body": '{"action": "move", "game": {"id": "g1", "seats": [7, 8]}, "flag": true, '
    '"o": {"k": "v"}, "odd key": 1}',
    "stageVariables": {"env": "prod"},
    "requestContext": {"routeKey": "move", "eventType": "MESSAGE", "connectionId": "Abc123="},
}


def _eval(params: dict[str, str], event: dict[str, Any]) -> tuple[dict[str, str], list[Any]]:
    return evaluate(parse_mapping(params), event)


def test_context_stage_and_static_values() -> None:
    headers, query = _eval(
        {
            "integration.request.header.connectionId": "context.connectionId",
            "integration.request.header.X-Route": "context.routeKey",
            "integration.request.header.X-Event": "context.eventType",
            "integration.request.header.X-Api": "context.apiId",
            "integration.request.header.X-Domain": "context.domainName",
            "integration.request.header.X-Stage": "context.stage",
            "integration.request.header.X-Ip": "context.identity.sourceIp",
            "integration.request.header.X-At": "context.connectedAt",
            "integration.request.header.X-User": "context.authorizer.principalId",
            "integration.request.header.X-Tier": "context.authorizer.tier",
            "integration.request.header.X-N": "context.authorizer.n",
            "integration.request.header.X-Env": "stageVariables.env",
            "integration.request.header.X-Static": "'hello world'",
            "integration.request.querystring.rid": "context.requestId",
        },
        CONNECT,
    )
    assert headers == {
        "connectionId": "Abc123=",
        "X-Route": "$connect",
        "X-Event": "CONNECT",
        "X-Api": "abcdefghij",
        "X-Domain": "127.0.0.1:9",
        "X-Stage": "live",
        "X-Ip": "10.0.0.1",
        "X-At": "1700000000000",
        "X-User": "alice",
        "X-Tier": "gold",
        "X-N": "3",
        "X-Env": "prod",
        "X-Static": "hello world",
    }
    assert query == [("rid", "req-1")]


def test_route_request_headers_and_query_strings_on_connect() -> None:
    headers, query = _eval(
        {
            "integration.request.header.token": "route.request.header.x-token",  # any case
            "integration.request.header.accept": "route.request.multivalueheader.Accept",
            "integration.request.querystring.room": "route.request.querystring.room",
            "integration.request.querystring.tag": "route.request.multivaluequerystring.tag",
            "integration.request.header.missing": "route.request.header.Nope",
        },
        CONNECT,
    )
    assert headers == {"token": "abc", "accept": "a,b"}  # a missing source is left out
    assert query == [("room", "r2"), ("tag", "x"), ("tag", "y")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("route.request.body.action", "move"),
        ("route.request.body.$.action", "move"),  # a leading $. is accepted too
        ("route.request.body.game.id", "g1"),
        ("route.request.body.game.seats[1]", "8"),
        ("route.request.body.game.seats", "[7,8]"),  # non-strings as JSON text
        ("route.request.body.flag", "true"),
        ("route.request.body.o", '{"k":"v"}'),
        ("route.request.body['odd key']", "1"),
        ("route.request.body", MESSAGE["body"]),  # the whole body
        ("route.request.body.game.nope", None),
        ("route.request.body.game.seats[5]", None),
        ("route.request.body.action.deeper", None),
    ],
)
def test_body_json_paths(value: str, expected: str | None) -> None:
    headers, _ = _eval({"integration.request.header.X": value}, MESSAGE)
    assert headers.get("X") == expected


def test_a_body_that_is_not_json_maps_nothing() -> None:
    event = {**MESSAGE, "body": "plain text"}
    headers, _ = _eval(
        {
            "integration.request.header.A": "route.request.body.action",
            "integration.request.header.B": "route.request.body",
        },
        event,
    )
    assert headers == {"B": "plain text"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"integration.request.path.id": "context.connectionId"},
            "integration.request.path.id: only integration.request.header.NAME",
        ),
        (
            {"method.request.header.X": "context.connectionId"},
            "method.request.header.X: only integration.request.header.NAME",
        ),
        (
            {"integration.request.header.X": "context.identity.accountId"},
            "integration.request.header.X: 'context.identity.accountId': sockway's events carry",
        ),
        (
            {"integration.request.header.X": "$context.connectionId"},
            "integration.request.header.X: '$context.connectionId' is not a mapping expression",
        ),
        (
            {"integration.request.header.X": "static"},
            "integration.request.header.X: 'static' is not a mapping expression",
        ),
        (
            {"integration.request.header.X": "route.request.path.id"},
            "integration.request.header.X: 'route.request.path.id' is not a mapping",
        ),
        (
            {"integration.request.header.X": "route.request.body.a[x]"},
            "integration.request.header.X: JSONPath 'a[x]' is not supported",
        ),
        (
            {"integration.request.header.X": "route.request.body.a..b"},
            "integration.request.header.X: JSONPath 'a..b' is not supported",
        ),
        (
            {"integration.request.header.X": "route.request.body.$"},
            "integration.request.header.X: route.request.body. needs a JSONPath",
        ),
        ({"integration.request.header.X": ""}, "integration.request.header.X: the value must"),
        (
            {"integration.request.header.X Y": "'v'"},
            "integration.request.header.X Y: only integration.request.header.NAME",
        ),
    ],
)
def test_ill_formed_mappings_are_refused_with_their_key(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(RequestParameterError) as info:
        parse_mapping(params)
    assert str(info.value).startswith(message), str(info.value)


def test_which_values_need_connect() -> None:
    mappings = parse_mapping(
        {
            "integration.request.header.A": "route.request.header.Auth",
            "integration.request.header.B": "context.connectionId",
            "integration.request.querystring.c": "route.request.multivaluequerystring.c",
            "integration.request.header.D": "route.request.body.x",
        }
    )
    assert connect_only(mappings) == [
        "route.request.header.Auth",
        "route.request.multivaluequerystring.c",
    ]
