"""Lambda proxy events and error frames (apigw spec §1, §2.1, §5.2), checked against Powertools.

Every event built here is validated with aws-lambda-powertools' parser models and wrapped in
its ``APIGatewayWebSocketEvent`` data class (spec §9): existing handlers use exactly these.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    parse_api_gateway_arn,
)
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
)

from sockway.transport.handler import REASON_FRAME_TOO_BIG, REASON_MESSAGE_TOO_BIG
from sockway.websocket import wire as messages
from sockway.websocket.events import (
    ApiIdentity,
    ConnectionFacts,
    UpgradeRequest,
    authorizer_event,
    clf_time,
    connect_event,
    disconnect_event,
    message_event,
    request_context,
    trace_id,
)

NOW_MS = 1731324924561  # 11/Nov/2024:11:35:24.561 UTC (spec §1.7)
CONNECTED_MS = 1731324924553
DOMAIN = "abc123defg.execute-api.us-east-1.amazonaws.com"
CID = "BFHPhfCWIAMCKlQ="
RID = "BFHPhFe3IAMF95g="
MID = "BFaVtfGSIAMCKug="
AUTHORIZER: dict[str, Any] = {"principalId": "user-1", "role": "admin", "integrationLatency": 7}

TRACE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$")

BROWSER_HEADERS: tuple[tuple[str, str], ...] = (
    ("Host", DOMAIN),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("content-length", "0"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Sec-WebSocket-Key", "+W5xw47OHh3OTFsWKjGu9Q=="),
    ("Sec-WebSocket-Version", "13"),
    ("User-Agent", "Mozilla/5.0"),
    ("Origin", "https://example.com"),
)


def api(stage_variables: dict[str, str] | None = None) -> ApiIdentity:
    return ApiIdentity(
        api_id="abc123defg",
        stage="prod",
        domain_name=DOMAIN,
        region="us-east-1",
        account_id="123456789012",
        stage_variables=stage_variables or {},
    )


def facts(
    user_agent: str | None = "Mozilla/5.0", source_ip: str = "203.0.113.10"
) -> ConnectionFacts:
    return ConnectionFacts(
        connection_id=CID,
        connected_at_ms=CONNECTED_MS,
        source_ip=source_ip,
        user_agent=user_agent,
    )


def upgrade(
    query: tuple[tuple[str, str], ...] = (),
    headers: tuple[tuple[str, str], ...] = BROWSER_HEADERS,
    *,
    source_ip: str = "203.0.113.10",
    port: int = 8443,
    scheme: str = "https",
) -> UpgradeRequest:
    return UpgradeRequest(
        headers=headers,
        query=query,
        source_ip=source_ip,
        user_agent="Mozilla/5.0",
        local_port=port,
        scheme=scheme,
    )


def build_connect(
    *,
    query: tuple[tuple[str, str], ...] = (),
    authorizer: dict[str, Any] | None = None,
    stage_variables: dict[str, str] | None = None,
    headers: tuple[tuple[str, str], ...] = BROWSER_HEADERS,
) -> dict[str, Any]:
    return connect_event(
        api(stage_variables),
        facts(),
        upgrade(query, headers),
        request_id=RID,
        now_ms=NOW_MS,
        authorizer=authorizer,
    )


def build_message(
    *,
    authorizer: dict[str, Any] | None = None,
    stage_variables: dict[str, str] | None = None,
    route_key: str = "sendmessage",
    body: str = '{"action":"sendmessage","data":"hi"}',
) -> dict[str, Any]:
    return message_event(
        api(stage_variables),
        facts(),
        route_key=route_key,
        body=body,
        message_id=MID,
        request_id=RID,
        now_ms=NOW_MS,
        authorizer=authorizer,
    )


def build_disconnect(
    *,
    authorizer: dict[str, Any] | None = None,
    stage_variables: dict[str, str] | None = None,
    status_code: int = 1005,
    reason: str = messages.REASON_NO_STATUS,
) -> dict[str, Any]:
    return disconnect_event(
        api(stage_variables),
        facts(),
        status_code=status_code,
        reason=reason,
        request_id=RID,
        now_ms=NOW_MS,
        authorizer=authorizer,
    )


def build_authorizer(
    *,
    query: tuple[tuple[str, str], ...] = (),
    stage_variables: dict[str, str] | None = None,
) -> dict[str, Any]:
    return authorizer_event(
        api(stage_variables), facts(), upgrade(query), request_id=RID, now_ms=NOW_MS
    )


VARIANTS = pytest.mark.parametrize(
    ("authorizer", "stage_variables"),
    [
        (None, None),
        (AUTHORIZER, None),
        (None, {"env": "test"}),
        (AUTHORIZER, {"env": "test", "table": "conns"}),
    ],
    ids=["plain", "authorizer", "stagevars", "authorizer+stagevars"],
)


def check_common_context(ctx: dict[str, Any]) -> None:
    assert ctx["extendedRequestId"] == RID
    assert ctx["requestId"] == RID
    assert ctx["requestTime"] == "11/Nov/2024:11:35:24 +0000"
    assert ctx["requestTimeEpoch"] == NOW_MS
    assert ctx["connectedAt"] == CONNECTED_MS
    assert ctx["messageDirection"] == "IN"
    assert ctx["stage"] == "prod"
    assert ctx["domainName"] == DOMAIN
    assert ctx["connectionId"] == CID
    assert ctx["apiId"] == "abc123defg"
    assert ctx["identity"] == {"sourceIp": "203.0.113.10", "userAgent": "Mozilla/5.0"}
    # Keys AWS does not put into WebSocket events (§1.1).
    for absent in ("accountId", "resourceId", "resourcePath", "httpMethod", "path", "protocol"):
        assert absent not in ctx


# -- requestTime and trace ids (§1.1, §1.3) ---------------------------------------------------


@pytest.mark.parametrize(
    ("epoch_ms", "expected"),
    [
        (1731324924561, "11/Nov/2024:11:35:24 +0000"),
        (1737995987617, "27/Jan/2025:16:39:47 +0000"),
        (1731333109875, "11/Nov/2024:13:51:49 +0000"),
        (0, "01/Jan/1970:00:00:00 +0000"),
        (951782400999, "29/Feb/2000:00:00:00 +0000"),
        (1735689599999, "31/Dec/2024:23:59:59 +0000"),
    ],
)
def test_request_time_is_clf_utc(epoch_ms: int, expected: str) -> None:
    assert clf_time(epoch_ms) == expected


def test_request_time_uses_english_months_whatever_the_month() -> None:
    months = [
        clf_time(int(datetime(2024, m, 15, tzinfo=UTC).timestamp() * 1000)) for m in range(1, 13)
    ]
    assert [t[3:6] for t in months] == [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]  # fmt: skip


def test_trace_id_shape_and_epoch_seconds() -> None:
    value = trace_id(NOW_MS)
    assert TRACE.match(value)
    assert int(value.split("-")[1], 16) == NOW_MS // 1000
    assert trace_id(NOW_MS) != value  # random part


def test_connect_method_arn() -> None:
    assert api().connect_method_arn == (
        "arn:aws:execute-api:us-east-1:123456789012:abc123defg/prod/$connect"
    )


def test_identity_without_user_agent_has_only_source_ip() -> None:
    ctx = request_context(
        api(),
        facts(user_agent=None),
        route_key="$default",
        event_type="MESSAGE",
        request_id=RID,
        now_ms=NOW_MS,
        authorizer=None,
    )
    assert ctx["identity"] == {"sourceIp": "203.0.113.10"}
    assert "authorizer" not in ctx


# -- CONNECT (§1.1-1.3, §1.7) ----------------------------------------------------------------


@VARIANTS
def test_connect_event_validates_with_powertools(
    authorizer: dict[str, Any] | None, stage_variables: dict[str, str] | None
) -> None:
    for query in ((), (("token", "abc"),)):
        event = build_connect(query=query, authorizer=authorizer, stage_variables=stage_variables)
        model = APIGatewayWebSocketConnectEventModel.model_validate(event)
        assert model.request_context.route_key == "$connect"
        assert model.request_context.event_type == "CONNECT"
        assert model.request_context.message_direction == "IN"
        assert model.request_context.connection_id == CID
        assert model.request_context.identity.source_ip == ipaddress.ip_network("203.0.113.10")
        assert model.request_context.request_time_epoch == datetime.fromtimestamp(
            NOW_MS / 1000, UTC
        )
        assert model.is_base64_encoded is False
        assert model.headers["Sec-WebSocket-Key"] == "+W5xw47OHh3OTFsWKjGu9Q=="


@VARIANTS
def test_connect_event_data_class(
    authorizer: dict[str, Any] | None, stage_variables: dict[str, str] | None
) -> None:
    event = APIGatewayWebSocketEvent(
        build_connect(
            query=(("token", "abc"),), authorizer=authorizer, stage_variables=stage_variables
        )
    )
    ctx = event.request_context
    assert ctx.route_key == "$connect"
    assert ctx.event_type == "CONNECT"
    assert ctx.connection_id == CID
    assert ctx.message_id is None
    assert ctx.disconnect_status_code is None
    assert ctx.request_time == "11/Nov/2024:11:35:24 +0000"
    assert ctx.request_time_epoch == NOW_MS
    assert ctx.connected_at == CONNECTED_MS
    assert ctx.domain_name == DOMAIN
    assert ctx.api_id == "abc123defg"
    assert ctx.stage == "prod"
    assert ctx.identity.source_ip == "203.0.113.10"
    assert ctx.identity.user_agent == "Mozilla/5.0"
    assert event.is_base64_encoded is False
    assert event.body is None
    assert event.headers["sec-websocket-version"] == "13"  # case-insensitive
    assert event.multi_value_headers["ORIGIN"] == ["https://example.com"]
    assert event.query_string_parameters["token"] == "abc"
    assert event.multi_value_query_string_parameters["token"] == ["abc"]
    assert event.get("stageVariables") == stage_variables
    assert event["requestContext"].get("authorizer") == authorizer


def test_connect_event_fields() -> None:
    event = build_connect()
    assert set(event) == {"headers", "multiValueHeaders", "requestContext", "isBase64Encoded"}
    ctx = event["requestContext"]
    check_common_context(ctx)
    assert ctx["routeKey"] == "$connect"
    assert ctx["eventType"] == "CONNECT"
    for absent in ("messageId", "disconnectStatusCode", "disconnectReason", "authorizer"):
        assert absent not in ctx
    for absent in ("version", "resource", "path", "httpMethod", "pathParameters", "body"):
        assert absent not in event
    assert event["isBase64Encoded"] is False


def test_connect_headers_drop_hop_by_hop_and_keep_the_rest() -> None:
    headers = build_connect()["headers"]
    for hop in ("Connection", "Upgrade", "content-length"):
        assert hop not in headers
    assert {k.lower() for k in headers} >= {
        "host",
        "sec-websocket-extensions",
        "sec-websocket-key",
        "sec-websocket-version",
        "user-agent",
        "origin",
    }
    assert headers["Host"] == DOMAIN  # original casing kept
    assert headers["Origin"] == "https://example.com"


def test_hop_by_hop_headers_are_dropped_whatever_their_casing() -> None:
    headers = (("connection", "upgrade"), ("UPGRADE", "websocket"), ("Content-Length", "0"))
    event = build_connect(headers=(("Host", DOMAIN), *headers))
    assert {k.lower() for k in event["headers"]}.isdisjoint({"connection", "upgrade"})
    assert "content-length" not in {k.lower() for k in event["headers"]}
    assert {k.lower() for k in event["multiValueHeaders"]}.isdisjoint(
        {"connection", "upgrade", "content-length"}
    )


def test_connect_headers_added_by_the_gateway() -> None:
    headers = build_connect()["headers"]
    assert TRACE.match(headers["X-Amzn-Trace-Id"])
    assert int(headers["X-Amzn-Trace-Id"].split("-")[1], 16) == NOW_MS // 1000
    assert headers["X-Forwarded-For"] == "203.0.113.10"
    assert headers["X-Forwarded-Port"] == "8443"
    assert headers["X-Forwarded-Proto"] == "https"


def test_forwarded_headers_follow_the_listener() -> None:
    event = connect_event(
        api(),
        facts(source_ip="127.0.0.1"),
        upgrade(source_ip="127.0.0.1", port=8080, scheme="http"),
        request_id=RID,
        now_ms=NOW_MS,
        authorizer=None,
    )
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Port"] == "8080"
    assert event["headers"]["X-Forwarded-Proto"] == "http"


def test_client_forwarded_for_is_extended_and_spoofed_headers_replaced() -> None:
    spoof = (
        ("Host", DOMAIN),
        ("x-forwarded-for", "198.51.100.7"),
        ("X-Forwarded-Port", "1"),
        ("x-forwarded-proto", "gopher"),
        ("X-Amzn-Trace-Id", "Root=forged"),
    )
    headers = build_connect(headers=spoof)["headers"]
    lowered = {k.lower(): v for k, v in headers.items()}
    assert len(lowered) == len(headers)  # each header once, whatever the client's casing
    assert lowered["x-forwarded-for"] == "198.51.100.7, 203.0.113.10"
    assert lowered["x-forwarded-port"] == "8443"
    assert lowered["x-forwarded-proto"] == "https"
    assert TRACE.match(lowered["x-amzn-trace-id"])


def test_multi_value_headers_mirror_headers() -> None:
    event = build_connect()
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}


def test_repeated_header_last_value_and_multi_map() -> None:
    headers = (("Host", DOMAIN), ("X-Custom", "one"), ("X-Custom", "two"))
    event = build_connect(headers=headers)
    assert event["headers"]["X-Custom"] == "two"
    assert event["multiValueHeaders"]["X-Custom"] == ["one", "two"]


def test_no_query_string_means_no_query_keys() -> None:
    event = build_connect()
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event
    assert APIGatewayWebSocketEvent(event).query_string_parameters == {}


def test_query_string_single_and_multi_values() -> None:
    event = build_connect(query=(("token", "abc"), ("room", "a"), ("room", "b")))
    assert event["queryStringParameters"] == {"token": "abc", "room": "b"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"], "room": ["a", "b"]}
    APIGatewayWebSocketConnectEventModel.model_validate(event)


def test_query_value_may_be_empty() -> None:
    event = build_connect(query=(("flag", ""),))
    assert event["queryStringParameters"] == {"flag": ""}
    assert event["multiValueQueryStringParameters"] == {"flag": [""]}


def test_stage_variables_only_when_the_stage_defines_some() -> None:
    assert "stageVariables" not in build_connect()
    event = build_connect(stage_variables={"env": "test"})
    assert event["stageVariables"] == {"env": "test"}


def test_stage_variables_are_a_copy() -> None:
    variables = {"env": "test"}
    event = build_connect(stage_variables=variables)
    event["stageVariables"]["env"] = "changed"
    assert variables == {"env": "test"}


def test_connect_event_with_authorizer() -> None:
    event = build_connect(authorizer=AUTHORIZER)
    assert event["requestContext"]["authorizer"] == AUTHORIZER


def test_connect_event_ipv6_source_validates() -> None:
    event = connect_event(
        api(),
        facts(source_ip="::1", user_agent=None),
        upgrade(source_ip="::1", headers=(("Host", "localhost:8443"),)),
        request_id=RID,
        now_ms=NOW_MS,
        authorizer=None,
    )
    model = APIGatewayWebSocketConnectEventModel.model_validate(event)
    assert model.request_context.identity.user_agent is None
    assert event["requestContext"]["identity"] == {"sourceIp": "::1"}


# -- MESSAGE (§1.2, §1.7) -----------------------------------------------------------------


@VARIANTS
def test_message_event_validates_with_powertools(
    authorizer: dict[str, Any] | None, stage_variables: dict[str, str] | None
) -> None:
    event = build_message(authorizer=authorizer, stage_variables=stage_variables)
    model = APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert model.request_context.route_key == "sendmessage"
    assert model.request_context.message_id == MID
    assert model.request_context.event_type == "MESSAGE"
    assert model.request_context.message_direction == "IN"
    assert model.body == '{"action":"sendmessage","data":"hi"}'
    assert model.is_base64_encoded is False


@VARIANTS
def test_message_event_data_class(
    authorizer: dict[str, Any] | None, stage_variables: dict[str, str] | None
) -> None:
    event = APIGatewayWebSocketEvent(
        build_message(authorizer=authorizer, stage_variables=stage_variables)
    )
    ctx = event.request_context
    assert ctx.route_key == "sendmessage"
    assert ctx.event_type == "MESSAGE"
    assert ctx.message_id == MID
    assert ctx.connection_id == CID
    assert ctx.disconnect_reason is None
    assert event.body == '{"action":"sendmessage","data":"hi"}'
    assert event.json_body == {"action": "sendmessage", "data": "hi"}
    assert event.decoded_body == event.body
    assert event.is_base64_encoded is False
    assert event.headers == {}
    assert event.get("stageVariables") == stage_variables
    assert event["requestContext"].get("authorizer") == authorizer


def test_message_event_fields() -> None:
    event = build_message()
    assert set(event) == {"requestContext", "body", "isBase64Encoded"}
    ctx = event["requestContext"]
    check_common_context(ctx)
    assert ctx["messageId"] == MID
    assert ctx["eventType"] == "MESSAGE"
    for absent in ("disconnectStatusCode", "disconnectReason", "authorizer"):
        assert absent not in ctx


def test_message_event_on_default_route_with_non_json_body() -> None:
    event = build_message(route_key="$default", body="hello, not json")
    model = APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert model.request_context.route_key == "$default"
    assert event["body"] == "hello, not json"


def test_message_event_empty_body() -> None:
    event = build_message(route_key="$default", body="")
    assert event["body"] == ""
    APIGatewayWebSocketMessageEventModel.model_validate(event)


def test_message_event_has_no_headers_or_query() -> None:
    event = build_message(authorizer=AUTHORIZER, stage_variables={"a": "b"})
    for absent in (
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
    ):
        assert absent not in event
    assert event["stageVariables"] == {"a": "b"}
    assert event["requestContext"]["authorizer"] == AUTHORIZER


# -- DISCONNECT (§1.4, §1.7) ----------------------------------------------------------------


@VARIANTS
def test_disconnect_event_validates_with_powertools(
    authorizer: dict[str, Any] | None, stage_variables: dict[str, str] | None
) -> None:
    event = build_disconnect(authorizer=authorizer, stage_variables=stage_variables)
    model = APIGatewayWebSocketDisconnectEventModel.model_validate(event)
    assert model.request_context.route_key == "$disconnect"
    assert model.request_context.event_type == "DISCONNECT"
    assert model.request_context.disconnect_status_code == 1005
    assert model.request_context.disconnect_reason == "Client-side close frame status not set"
    assert model.is_base64_encoded is False


@VARIANTS
def test_disconnect_event_data_class(
    authorizer: dict[str, Any] | None, stage_variables: dict[str, str] | None
) -> None:
    event = APIGatewayWebSocketEvent(
        build_disconnect(
            authorizer=authorizer,
            stage_variables=stage_variables,
            status_code=messages.CLOSE_NORMAL,
            reason=messages.REASON_DELETE,
        )
    )
    ctx = event.request_context
    assert ctx.route_key == "$disconnect"
    assert ctx.event_type == "DISCONNECT"
    assert ctx.disconnect_status_code == 1000
    assert ctx.disconnect_reason == "Connection Closed Normally"
    assert ctx.message_id is None
    assert event.headers["host"] == DOMAIN
    assert event.body is None
    assert event.get("stageVariables") == stage_variables
    assert event["requestContext"].get("authorizer") == authorizer


def test_disconnect_has_exactly_the_four_quirky_headers() -> None:
    event = build_disconnect()
    assert event["headers"] == {
        "Host": DOMAIN,
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    assert event["multiValueHeaders"] == {
        "Host": [DOMAIN],
        "x-api-key": [""],
        "X-Forwarded-For": [""],
        "x-restapi": [""],
    }


def test_disconnect_event_fields() -> None:
    event = build_disconnect(authorizer=None)
    assert set(event) == {"headers", "multiValueHeaders", "requestContext", "isBase64Encoded"}
    ctx = event["requestContext"]
    check_common_context(ctx)
    assert ctx["disconnectStatusCode"] == 1005
    assert ctx["disconnectReason"] == "Client-side close frame status not set"
    assert "messageId" not in ctx
    assert "authorizer" not in ctx


def test_disconnect_empty_reason_is_a_string_and_validates() -> None:
    event = build_disconnect(status_code=1001, reason="")
    assert event["requestContext"]["disconnectReason"] == ""
    model = APIGatewayWebSocketDisconnectEventModel.model_validate(event)
    assert model.request_context.disconnect_reason == ""


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (messages.CLOSE_NORMAL, messages.REASON_DELETE),
        (messages.CLOSE_GOING_AWAY, messages.REASON_GOING_AWAY),
        (messages.CLOSE_UNSUPPORTED_DATA, messages.REASON_BINARY),
        (messages.CLOSE_NO_STATUS, messages.REASON_NO_STATUS),
        (messages.CLOSE_ABNORMAL, messages.REASON_ABNORMAL),
        (messages.CLOSE_MESSAGE_TOO_BIG, REASON_MESSAGE_TOO_BIG),
        (messages.CLOSE_MESSAGE_TOO_BIG, REASON_FRAME_TOO_BIG),
        (4000, "custom"),
    ],
)
def test_disconnect_codes_validate(code: int, reason: str) -> None:
    event = build_disconnect(status_code=code, reason=reason)
    model = APIGatewayWebSocketDisconnectEventModel.model_validate(event)
    assert model.request_context.disconnect_status_code == code


def test_close_codes_and_reasons_from_the_spec() -> None:
    assert messages.CLOSE_NORMAL == 1000
    assert messages.CLOSE_GOING_AWAY == 1001
    assert messages.CLOSE_UNSUPPORTED_DATA == 1003
    assert messages.CLOSE_NO_STATUS == 1005
    assert messages.CLOSE_ABNORMAL == 1006
    assert messages.CLOSE_MESSAGE_TOO_BIG == 1009
    assert messages.REASON_NO_STATUS == "Client-side close frame status not set"
    assert messages.REASON_DELETE == "Connection Closed Normally"
    assert messages.REASON_GOING_AWAY == "Going away"


# -- events of one connection share the connection facts (§1.1) ----------------------------


def test_all_events_repeat_connection_facts_and_authorizer() -> None:
    events: list[Callable[..., dict[str, Any]]] = [build_connect, build_message, build_disconnect]
    contexts = [build(authorizer=AUTHORIZER)["requestContext"] for build in events]
    for ctx in contexts:
        assert ctx["connectionId"] == CID
        assert ctx["connectedAt"] == CONNECTED_MS
        assert ctx["authorizer"] == AUTHORIZER


# -- REQUEST authorizer event (§5.2) ------------------------------------------------------


def test_authorizer_event_shape() -> None:
    event = build_authorizer(query=(("token", "abc"),))
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == (
        "arn:aws:execute-api:us-east-1:123456789012:abc123defg/prod/$connect"
    )
    assert event["methodArn"].endswith("/$connect")
    assert event["queryStringParameters"] == {"token": "abc"}
    assert event["multiValueQueryStringParameters"] == {"token": ["abc"]}
    assert event["stageVariables"] == {}
    for absent in ("path", "resource", "httpMethod", "pathParameters", "version", "body"):
        assert absent not in event
    ctx = event["requestContext"]
    check_common_context(ctx)
    assert ctx["routeKey"] == "$connect"
    assert ctx["eventType"] == "CONNECT"
    assert "authorizer" not in ctx


def test_authorizer_event_keeps_hop_by_hop_headers() -> None:
    event = build_authorizer()
    headers = event["headers"]
    assert headers["Connection"] == "Upgrade"
    assert headers["Upgrade"] == "websocket"
    assert headers["content-length"] == "0"
    assert event["multiValueHeaders"]["Connection"] == ["Upgrade"]
    # ... and the same gateway additions as the proxy event.
    assert TRACE.match(headers["X-Amzn-Trace-Id"])
    assert headers["X-Forwarded-For"] == "203.0.113.10"
    assert headers["X-Forwarded-Port"] == "8443"
    assert headers["X-Forwarded-Proto"] == "https"
    proxy = build_connect()["headers"]
    assert set(headers) - set(proxy) == {"Connection", "Upgrade", "content-length"}


def test_authorizer_event_has_content_length_even_if_the_client_sent_none() -> None:
    # WebSocket clients (wscat/ws, browsers) send no Content-Length on the upgrade GET, yet
    # AWS's authorizer event carries "content-length": "0" (§5.2 capture, a client without a
    # User-Agent) while the proxy event does not (§1.3).
    headers = tuple((k, v) for k, v in BROWSER_HEADERS if k.lower() != "content-length")
    event = authorizer_event(
        api(), facts(), upgrade(headers=headers), request_id=RID, now_ms=NOW_MS
    )
    assert {k.lower(): v for k, v in event["headers"].items()}.get("content-length") == "0"
    assert "content-length" not in {k.lower() for k in build_connect(headers=headers)["headers"]}


def test_authorizer_event_empty_maps_are_present() -> None:
    event = build_authorizer()
    assert event["queryStringParameters"] == {}
    assert event["multiValueQueryStringParameters"] == {}
    assert event["stageVariables"] == {}


def test_authorizer_event_repeated_query_and_stage_variables() -> None:
    event = build_authorizer(query=(("room", "a"), ("room", "b")), stage_variables={"env": "test"})
    assert event["queryStringParameters"] == {"room": "b"}
    assert event["multiValueQueryStringParameters"] == {"room": ["a", "b"]}
    assert event["stageVariables"] == {"env": "test"}


def test_authorizer_event_with_powertools_data_class() -> None:
    event = APIGatewayAuthorizerRequestEvent(
        build_authorizer(query=(("token", "abc"),), stage_variables={"env": "test"})
    )
    assert event.get_type == "REQUEST"
    assert event.method_arn.endswith("/prod/$connect")
    assert event.headers["sec-websocket-key"] == "+W5xw47OHh3OTFsWKjGu9Q=="
    assert event.query_string_parameters["token"] == "abc"
    assert event.stage_variables == {"env": "test"}
    arn = parse_api_gateway_arn(event.method_arn, is_websocket_authorizer=True)
    assert arn.region == "us-east-1"
    assert arn.aws_account_id == "123456789012"
    assert arn.api_id == "abc123defg"
    assert arn.stage == "prod"
    assert arn.resource == "$connect"
    assert arn.arn == event.method_arn


def test_authorizer_event_context_validates_as_a_connect_context() -> None:
    # The authorizer event's requestContext is the CONNECT context (§5.2): reuse the
    # CONNECT model to check it.
    event = build_authorizer()
    proxy_like = {
        "headers": event["headers"],
        "multiValueHeaders": event["multiValueHeaders"],
        "requestContext": event["requestContext"],
        "isBase64Encoded": False,
    }
    APIGatewayWebSocketConnectEventModel.model_validate(proxy_like)


# -- error frames (§2, §2.1): byte-exact --------------------------------------------------


def test_forbidden_frame_is_byte_exact() -> None:
    assert messages.forbidden_frame("XDmENcnwIE0CFEQ=", "XDmGEE2RoE0FRdQ=") == (
        b'{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", '
        b'"requestId":"XDmGEE2RoE0FRdQ="}'
    )


def test_internal_error_frame_is_byte_exact() -> None:
    assert messages.internal_error_frame("Qyi07eCbtjMCJKw=", "Qyi3UG41tjMFlUg=") == (
        b'{"message": "Internal server error", "connectionId":"Qyi07eCbtjMCJKw=", '
        b'"requestId":"Qyi3UG41tjMFlUg="}'
    )


def test_timeout_frame_prefix() -> None:
    frame = messages.timeout_frame("X", "Y")
    assert frame.startswith(b'{"message": "Endpoint request timed out",')
    assert frame == (
        b'{"message": "Endpoint request timed out", "connectionId":"X", "requestId":"Y"}'
    )


def test_error_frame_generic_and_json() -> None:
    import json

    frame = messages.error_frame("Forbidden", "X", "Y")
    assert frame == b'{"message": "Forbidden", "connectionId":"X", "requestId":"Y"}'
    assert isinstance(frame, bytes)
    assert json.loads(frame) == {"message": "Forbidden", "connectionId": "X", "requestId": "Y"}


def test_error_frames_with_real_ids_are_valid_json() -> None:
    import json

    for frame in (
        messages.forbidden_frame("BFaT_fALIAMCKug=", "JC1dgf9yoAMCK-g="),
        messages.internal_error_frame("BFaT_fALIAMCKug=", "JC1dgf9yoAMCK-g="),
        messages.timeout_frame("BFaT_fALIAMCKug=", "JC1dgf9yoAMCK-g="),
    ):
        doc = json.loads(frame)
        assert doc["connectionId"] == "BFaT_fALIAMCKug="
        assert doc["requestId"] == "JC1dgf9yoAMCK-g="
