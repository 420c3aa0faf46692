"""Route selection expressions (apigw spec §2): compile, evaluate, select."""

from __future__ import annotations

import json

import pytest

from sockway.websocket import routing
from sockway.websocket.routing import (
    CONNECT_ROUTE,
    DEFAULT_ROUTE,
    DISCONNECT_ROUTE,
    ExpressionError,
    SelectionExpression,
    select_route,
)

ACTION = "$request.body.action"


def evaluate(expression: str, body: str) -> str | None:
    return SelectionExpression.compile(expression).evaluate(body)


def body(doc: object) -> str:
    return json.dumps(doc)


# -- the expression language (§2) -----------------------------------------------------------


def test_canonical_expression_selects_the_action() -> None:
    assert evaluate(ACTION, body({"action": "sendmessage", "data": "hi"})) == "sendmessage"


def test_braces_form_is_the_same_variable() -> None:
    assert evaluate("${request.body.action}", body({"action": "join"})) == "join"


def test_nested_path() -> None:
    assert evaluate("$request.body.a.b", body({"a": {"b": "deep"}})) == "deep"
    assert evaluate("${request.body.a.b.c}", body({"a": {"b": {"c": "deeper"}}})) == "deeper"


def test_array_index() -> None:
    doc = {"items": ["first", "second"], "a": [{"b": "x"}, {"b": "y"}]}
    assert evaluate("$request.body.items[0]", body(doc)) == "first"
    assert evaluate("$request.body.items[1]", body(doc)) == "second"
    assert evaluate("${request.body.a[1].b}", body(doc)) == "y"


def test_index_out_of_range_is_empty() -> None:
    assert evaluate("$request.body.items[2]", body({"items": ["a", "b"]})) == ""


def test_index_on_an_object_is_empty() -> None:
    assert evaluate("$request.body.items[0]", body({"items": {"0": "a"}})) == ""


def test_template_with_two_variables() -> None:
    expr = "${request.body.service}/${request.body.action}"
    assert evaluate(expr, body({"service": "chat", "action": "join"})) == "chat/join"


def test_template_with_literal_prefix_and_suffix() -> None:
    expr = "v1-${request.body.action}-end"
    assert evaluate(expr, body({"action": "join"})) == "v1-join-end"


def test_missing_path_is_empty_string() -> None:
    expr = "${request.body.action}-${request.body.invalidPath}"
    assert evaluate(expr, body({"action": "join"})) == "join-"


def test_missing_nested_path_is_empty_string() -> None:
    assert evaluate("$request.body.a.b", body({"a": "scalar"})) == ""
    assert evaluate("$request.body.a.b", body({})) == ""
    assert evaluate(ACTION, body({})) == ""


def test_variables_are_evaluated_once_without_recursion() -> None:
    # The value of a variable is not itself parsed as an expression.
    doc = {"action": "${request.body.other}", "other": "nope"}
    assert evaluate(ACTION, body(doc)) == "${request.body.other}"


def test_escaped_dollar_is_literal() -> None:
    expr = SelectionExpression.compile("\\$default")
    assert expr.evaluate(body({"action": "x"})) == "$default"
    assert not expr.reads_body


def test_escaped_dollar_inside_a_template() -> None:
    assert evaluate("\\$${request.body.action}", body({"action": "x"})) == "$x"


def test_static_expression_evaluates_to_itself() -> None:
    expr = SelectionExpression.compile("action")
    assert not expr.reads_body
    assert expr.evaluate(body({"action": "other"})) == "action"
    assert expr.source == "action"


def test_backslash_not_before_dollar_is_kept() -> None:
    assert evaluate("a\\b", "{}") == "a\\b"


def test_whole_body_variable() -> None:
    assert evaluate("$request.body", body("plain")) == "plain"


# -- stringification (§2: scalars as JSON text, arrays as [a, b], objects as JSON) -----------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text", "text"),
        ("", ""),
        (5, "5"),
        (-12, "-12"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (["a", "b"], "[a, b]"),
        ([1, True, "x"], "[1, true, x]"),
        ([], "[]"),
        ({"k": "v"}, '{"k":"v"}'),
        ({"k": [1, 2]}, '{"k":[1,2]}'),
        ("ünï ✓", "ünï ✓"),
    ],
)
def test_stringification(value: object, expected: str) -> None:
    assert evaluate(ACTION, body({"action": value})) == expected


def test_large_integer_keeps_its_json_text() -> None:
    # Valid JSON (RFC 8259 sets no range); "numbers as JSON text" (§2) means its digits.
    assert evaluate(ACTION, '{"action": 123456789012345678901234567890}') == (
        "123456789012345678901234567890"
    )


def test_out_of_range_number_elsewhere_does_not_make_the_body_non_json() -> None:
    # The body is valid JSON; a huge number in an unrelated field must not send the
    # message to $default (§2: only non-JSON messages cannot be evaluated).
    routes = frozenset({"send", DEFAULT_ROUTE})
    expr = SelectionExpression.compile(ACTION)
    assert select_route(expr, '{"action": "send", "n": 1e400}', routes) == "send"


# -- non-JSON bodies (§1.6, §2) ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello", "", "{not json", "{'action': 'x'}", "[1,"])
def test_non_json_body_cannot_be_evaluated(text: str) -> None:
    assert evaluate(ACTION, text) is None


@pytest.mark.parametrize("text", ['"just a string"', "42", "[1, 2]", "null", "true"])
def test_json_that_is_not_an_object_has_no_action(text: str) -> None:
    assert evaluate(ACTION, text) == ""


@pytest.mark.parametrize(
    "text",
    [
        '{"action": "send"}',
        '{"action": ""}',
        '{"other": 1}',
        '{"action": 12}',
        '{"action": 1.50}',
        '{"action": 123456789012345678901234567890}',
        '{"action": null}',
        '{"action": true}',
        '{"action": {"b": [1, "x"]}}',
        '{"action": ["a", 2]}',
        '{"action": NaN}',
        '{"action": "\\ud800"}',
        "[1]",
        '"s"',
        "7",
        "not json",
        "",
    ],
)
def test_the_single_key_shortcut_selects_what_the_general_path_selects(text: str) -> None:
    # `$request.body.action` takes a shortcut (one top-level key); the answer must be the
    # general evaluation's for every kind of body.
    fast = SelectionExpression.compile(ACTION)
    assert fast.single_key == "action"
    general = SelectionExpression.compile(ACTION)
    object.__setattr__(general, "single_key", None)
    assert fast.evaluate(text) == general.evaluate(text)


# -- select_route ---------------------------------------------------------------------------

ROUTES = frozenset({CONNECT_ROUTE, DISCONNECT_ROUTE, DEFAULT_ROUTE, "sendmessage", "chat/join"})


def select(expression: str, text: str, routes: frozenset[str] = ROUTES) -> str | None:
    return select_route(SelectionExpression.compile(expression), text, routes)


def test_exact_custom_route() -> None:
    assert select(ACTION, body({"action": "sendmessage"})) == "sendmessage"


def test_template_route() -> None:
    expr = "${request.body.service}/${request.body.action}"
    assert select(expr, body({"service": "chat", "action": "join"})) == "chat/join"


def test_match_is_exact_and_case_sensitive() -> None:
    assert select(ACTION, body({"action": "SendMessage"})) == DEFAULT_ROUTE
    assert select(ACTION, body({"action": "sendmessage "})) == DEFAULT_ROUTE


def test_unknown_action_falls_back_to_default() -> None:
    assert select(ACTION, body({"action": "nope"})) == DEFAULT_ROUTE


def test_missing_action_falls_back_to_default() -> None:
    assert select(ACTION, body({"data": 1})) == DEFAULT_ROUTE


def test_non_json_goes_to_default() -> None:
    assert select(ACTION, "hello there") == DEFAULT_ROUTE


def test_no_match_and_no_default_is_none() -> None:
    routes = frozenset({CONNECT_ROUTE, "sendmessage"})
    assert select(ACTION, body({"action": "nope"}), routes) is None
    assert select(ACTION, "not json", routes) is None
    assert select(ACTION, body({"action": "sendmessage"}), routes) == "sendmessage"


def test_no_routes_at_all() -> None:
    assert select(ACTION, body({"action": "x"}), frozenset()) is None


@pytest.mark.parametrize("lifecycle", [CONNECT_ROUTE, DISCONNECT_ROUTE])
def test_lifecycle_routes_are_never_selected(lifecycle: str) -> None:
    assert select(ACTION, body({"action": lifecycle})) == DEFAULT_ROUTE
    without_default = frozenset({CONNECT_ROUTE, DISCONNECT_ROUTE, "sendmessage"})
    assert select(ACTION, body({"action": lifecycle}), without_default) is None


def test_action_default_selects_default() -> None:
    assert select(ACTION, body({"action": DEFAULT_ROUTE})) == DEFAULT_ROUTE


def test_escaped_default_expression_always_selects_default() -> None:
    assert select("\\$default", body({"action": "sendmessage"})) == DEFAULT_ROUTE
    assert select("\\$default", "not json") == DEFAULT_ROUTE


def test_static_expression_selects_its_route() -> None:
    routes = frozenset({"action", DEFAULT_ROUTE})
    assert select("action", body({"action": "x"}), routes) == "action"


def test_number_action_selects_route_named_by_its_json_text() -> None:
    routes = frozenset({"5", "true", DEFAULT_ROUTE})
    assert select(ACTION, body({"action": 5}), routes) == "5"
    assert select(ACTION, body({"action": True}), routes) == "true"


# -- compile errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "$request.header.x",
        "${request.header.x}",
        "$context.routeKey",
        "$request.querystring.a",
        "$request.bodyx",
    ],
)
def test_unsupported_variable_is_a_compile_error(source: str) -> None:
    with pytest.raises(ExpressionError, match=r"unsupported variable|invalid JSON path"):
        SelectionExpression.compile(source)


def test_header_variable_message_names_the_variable() -> None:
    with pytest.raises(ExpressionError, match=r"\$request\.header\.x"):
        SelectionExpression.compile("$request.header.x")


@pytest.mark.parametrize("source", ["${request.body.action", "a/${request.body.b"])
def test_unclosed_brace_is_a_compile_error(source: str) -> None:
    with pytest.raises(ExpressionError, match="unclosed"):
        SelectionExpression.compile(source)


@pytest.mark.parametrize(
    "source", ["$", "a$", "$request.body.", "$request.body..a", "${request.body.a[x]}"]
)
def test_malformed_expression_is_a_compile_error(source: str) -> None:
    with pytest.raises(ExpressionError):
        SelectionExpression.compile(source)


def test_expression_error_is_a_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)


# -- the orjson shortcut gives the stdlib parser's answers ------------------------------------

TRICKY_BODIES = [
    '{"action":"sendmessage"}',
    '{"action":"a\\u00e9\\n"}',
    '{"action":"\\ud83d\\ude00"}',  # a surrogate pair
    '{"action":"\\ud800"}',  # a lone surrogate: orjson refuses, the stdlib keeps it
    '{"action": NaN}',
    '{"action": Infinity, "x": 1}',
    '{"action":"x","action":"y"}',  # duplicate keys: the last one
    '{"action":"x"}  \n',
    '{"action":"x"} trailing',
    '\ufeff{"action":"x"}',
    '{"action":"x", "n": 123456789012345678901234567890}',
    '{"action": 1.0e2}',
    '{"action": null}',
    '{"action": ["a", 1]}',
    '{"action": {"k": "v"}}',
    '{"other": "x"}',
    '"plain"',
    "[]",
    "",
    '{"action":"x\u0001"}',  # a raw control character inside a string
]


@pytest.mark.parametrize("text", TRICKY_BODIES)
@pytest.mark.parametrize(
    "source", [ACTION, "$request.body.action-$request.body.other", "$request.body"]
)
def test_orjson_shortcut_agrees_with_the_stdlib_parser(
    text: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expr = SelectionExpression.compile(source)
    fast = expr.evaluate(text)

    def refuse(_: object) -> object:
        raise routing.orjson.JSONDecodeError("forced", "", 0)

    monkeypatch.setattr(routing.orjson, "loads", refuse)  # the stdlib path only
    assert fast == expr.evaluate(text)


def test_bodies_nested_too_deep_to_read_select_default() -> None:
    # Issue 13 item 8: no RecursionError out of route selection, at any depth.
    from sockway.websocket.routing import SelectionExpression as Expr
    from sockway.websocket.routing import select_route as select

    routes = frozenset({"$default", "echo"})
    for source in ("$request.body.action", "$request.body", "${request.body.a}/x"):
        expr = Expr.compile(source)
        for depth in (990, 1025, 1500, 50_000):
            for body in (
                "[" * depth + "]" * depth,
                '{"action":' * depth + '"echo"' + "}" * depth,
                '{"action":"echo","a":' + "[" * depth + "]" * depth + "}",
            ):
                assert select(expr, body, routes) in ("$default", "echo")
