"""REQUEST Lambda authorizer on $connect (apigw spec §5): identity sources and decisions."""

from __future__ import annotations

from typing import Any

import pytest

from sockway.websocket.authorizer import (
    Decision,
    IdentitySourceError,
    check_identity_source,
    decide,
    identity_present,
)

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123defg/prod/$connect"
WILDCARD = "arn:aws:execute-api:*:*:*/*/*"


def statement(effect: str = "Allow", resource: Any = ARN, action: Any = "execute-api:Invoke"):
    return {"Action": action, "Effect": effect, "Resource": resource}


def response(
    *statements: dict[str, Any],
    principal: Any = "user-1",
    context: Any = None,
    as_list: bool = True,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": list(statements) if as_list else statements[0],
        },
    }
    if context is not None:
        result["context"] = context
    return result


# -- identity sources (§5.1) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "route.request.header.Auth",
        "route.request.header.X-Api-Token",
        "route.request.querystring.token",
        "stageVariables.secret",
    ],
)
def test_supported_identity_sources(source: str) -> None:
    check_identity_source(source)


@pytest.mark.parametrize(
    "source",
    ["", "Auth", "method.request.header.Auth", "route.request.header.", "$request.header.Auth"],
)
def test_unsupported_identity_sources(source: str) -> None:
    with pytest.raises(IdentitySourceError, match="unsupported identity source"):
        check_identity_source(source)


def test_header_source_is_case_insensitive() -> None:
    sources = ["route.request.header.Auth"]
    assert identity_present(sources, [("auth", "token")], [], {})
    assert identity_present(sources, [("AUTH", "token")], [], {})
    assert identity_present(["route.request.header.AUTH"], [("Auth", "token")], [], {})


def test_querystring_source() -> None:
    sources = ["route.request.querystring.token"]
    assert identity_present(sources, [], [("token", "abc")], {})
    assert not identity_present(sources, [], [("other", "abc")], {})


def test_querystring_source_is_case_sensitive() -> None:
    # Query string names are case-sensitive in API Gateway, unlike header names.
    assert not identity_present(["route.request.querystring.token"], [], [("Token", "x")], {})


def test_stage_variable_source() -> None:
    sources = ["stageVariables.secret"]
    assert identity_present(sources, [], [], {"secret": "s"})
    assert not identity_present(sources, [], [], {})
    assert not identity_present(sources, [], [], {"secret": ""})


def test_missing_header_is_absent() -> None:
    assert not identity_present(["route.request.header.Auth"], [("Host", "h")], [], {})


def test_empty_values_are_absent() -> None:
    assert not identity_present(["route.request.header.Auth"], [("Auth", "")], [], {})
    assert not identity_present(["route.request.querystring.token"], [], [("token", "")], {})


def test_every_listed_source_is_required() -> None:
    sources = ["route.request.header.Auth", "route.request.querystring.token"]
    assert identity_present(sources, [("Auth", "a")], [("token", "t")], {})
    assert not identity_present(sources, [("Auth", "a")], [], {})
    assert not identity_present(sources, [], [("token", "t")], {})


def test_no_sources_means_present() -> None:
    assert identity_present([], [], [], {})


def test_unknown_source_is_absent() -> None:
    assert not identity_present(["route.request.body.x"], [("x", "1")], [("x", "1")], {})


# -- decide: policies (§5.3) --------------------------------------------------------------


def test_allow_exact_arn() -> None:
    decision = decide(response(statement()), ARN, 12)
    assert decision.status == 200
    assert decision.authorizer == {"principalId": "user-1", "integrationLatency": 12}
    assert decision.problem is None


@pytest.mark.parametrize(
    "resource",
    [
        WILDCARD,
        "*",
        "arn:aws:execute-api:us-east-1:123456789012:abc123defg/*",
        "arn:aws:execute-api:us-east-1:123456789012:abc123defg/prod/*",
        "arn:aws:execute-api:us-east-1:123456789012:*/prod/$connect",
    ],
)
def test_allow_wildcard_resources(resource: str) -> None:
    assert decide(response(statement(resource=resource)), ARN, 1).status == 200


def test_resource_list() -> None:
    other = "arn:aws:execute-api:us-east-1:123456789012:zzzzzzzzzz/prod/$connect"
    assert decide(response(statement(resource=[other, ARN])), ARN, 1).status == 200
    assert decide(response(statement(resource=[other])), ARN, 1).status == 403


def test_allow_for_another_stage_or_api_is_403() -> None:
    other_stage = "arn:aws:execute-api:us-east-1:123456789012:abc123defg/dev/$connect"
    other_api = "arn:aws:execute-api:us-east-1:123456789012:zzzzzzzzzz/prod/*"
    assert decide(response(statement(resource=other_stage)), ARN, 1).status == 403
    assert decide(response(statement(resource=other_api)), ARN, 1).status == 403


def test_explicit_deny_wins_over_allow() -> None:
    result = response(statement("Allow", WILDCARD), statement("Deny", ARN))
    decision = decide(result, ARN, 1)
    assert decision.status == 403
    assert decision.authorizer is None
    result = response(statement("Deny", WILDCARD), statement("Allow", ARN))
    assert decide(result, ARN, 1).status == 403


def test_deny_alone_is_403() -> None:
    assert decide(response(statement("Deny")), ARN, 1).status == 403


def test_no_matching_statement_is_403() -> None:
    assert decide(response(), ARN, 1).status == 403
    assert decide(response(statement(action="execute-api:ManageConnections")), ARN, 1).status == 403
    assert decide(response(statement(action="s3:GetObject")), ARN, 1).status == 403


def test_deny_for_another_resource_does_not_block() -> None:
    other = "arn:aws:execute-api:us-east-1:123456789012:abc123defg/dev/$connect"
    result = response(statement("Allow"), statement("Deny", other))
    assert decide(result, ARN, 1).status == 200


def test_statement_as_a_single_dict() -> None:
    assert decide(response(statement(), as_list=False), ARN, 1).status == 200
    assert decide(response(statement("Deny"), as_list=False), ARN, 1).status == 403


@pytest.mark.parametrize(
    "action",
    ["execute-api:Invoke", "execute-api:invoke", "execute-api:*", "*", ["s3:*", "execute-api:*"]],
)
def test_matching_actions(action: Any) -> None:
    assert decide(response(statement(action=action)), ARN, 1).status == 200


def test_effect_is_case_insensitive() -> None:
    assert decide(response(statement("allow")), ARN, 1).status == 200
    assert decide(response(statement("ALLOW"), statement("deny")), ARN, 1).status == 403


def test_unknown_effect_is_not_an_allow() -> None:
    assert decide(response(statement("Maybe")), ARN, 1).status == 403


# -- decide: context and result (§5.4) ------------------------------------------------------


def test_context_is_flattened_and_stringified() -> None:
    context = {"role": "admin", "admin": True, "banned": False, "count": 5, "ratio": 1.5}
    decision = decide(response(statement(), context=context), ARN, 42)
    assert decision.status == 200
    assert decision.authorizer == {
        "principalId": "user-1",
        "role": "admin",
        "admin": "true",
        "banned": "false",
        "count": "5",
        "ratio": "1.5",
        "integrationLatency": 42,
    }


def test_principal_id_is_the_first_key_and_latency_the_last() -> None:
    decision = decide(response(statement(), context={"a": "1"}), ARN, 3)
    assert decision.authorizer is not None
    keys = list(decision.authorizer)
    assert keys[0] == "principalId"
    assert keys[-1] == "integrationLatency"
    assert decision.authorizer["integrationLatency"] == 3


def test_integration_latency_is_an_int() -> None:
    decision = decide(response(statement()), ARN, 0)
    assert decision.authorizer is not None
    assert decision.authorizer["integrationLatency"] == 0
    assert isinstance(decision.authorizer["integrationLatency"], int)


def test_numeric_principal_is_stringified() -> None:
    decision = decide(response(statement(), principal=123), ARN, 1)
    assert decision.authorizer is not None
    assert decision.authorizer["principalId"] == "123"


def test_empty_context_is_fine() -> None:
    decision = decide(response(statement(), context={}), ARN, 1)
    assert decision.authorizer == {"principalId": "user-1", "integrationLatency": 1}


def test_context_is_not_returned_when_denied() -> None:
    decision = decide(response(statement("Deny"), context={"a": "b"}), ARN, 1)
    assert decision == Decision(403)


# -- decide: invalid authorizer answers are 500 -------------------------------------------


def test_missing_principal_is_500() -> None:
    result = response(statement())
    del result["principalId"]
    decision = decide(result, ARN, 1)
    assert decision.status == 500
    assert decision.authorizer is None
    assert decision.problem is not None and "principalId" in decision.problem


@pytest.mark.parametrize("principal", [None, {"id": 1}, ["a"]])
def test_invalid_principal_is_500(principal: Any) -> None:
    assert decide(response(statement(), principal=principal), ARN, 1).status == 500


@pytest.mark.parametrize("value", [{"nested": "x"}, ["a", "b"], None])
def test_non_scalar_context_value_is_500(value: Any) -> None:
    decision = decide(response(statement(), context={"ok": "1", "bad": value}), ARN, 1)
    assert decision.status == 500
    assert decision.problem is not None and "'bad'" in decision.problem


def test_context_not_an_object_is_500() -> None:
    assert decide(response(statement(), context=["a"]), ARN, 1).status == 500
    assert decide(response(statement(), context="ctx"), ARN, 1).status == 500


@pytest.mark.parametrize(
    "result",
    [
        None,
        "Allow",
        ["principalId"],
        {"principalId": "u"},
        {"principalId": "u", "policyDocument": "Allow"},
        {"principalId": "u", "policyDocument": {"Version": "2012-10-17"}},
        {"principalId": "u", "policyDocument": {"Statement": ["Allow"]}},
    ],
)
def test_malformed_responses_are_500(result: Any) -> None:
    decision = decide(result, ARN, 1)
    assert decision.status == 500
    assert decision.problem
    assert decision.authorizer is None
