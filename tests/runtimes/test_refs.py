"""Handler reference forms (runtimes/refs.py) and their configuration errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockway.gateway.config import ConfigError, parse_config
from sockway.runtimes.refs import (
    HandlerForm,
    InvalidHandlerRef,
    LambdaTarget,
    check_remote_ref,
    handler_form,
    parse_lambda_ref,
    safe_url,
)

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:chat-send"


@pytest.mark.parametrize(
    ("ref", "form"),
    [
        ("app.handler", HandlerForm.PYTHON),
        ("pkg.mod.fn", HandlerForm.PYTHON),
        ("http://127.0.0.1:9000/x", HandlerForm.HTTP),
        ("https://example.com/hooks/sockway?v=1", HandlerForm.HTTP),
        (ARN, HandlerForm.LAMBDA),
        (ARN + ":live", HandlerForm.LAMBDA),
        ("lambda:chat-send", HandlerForm.LAMBDA),
    ],
)
def test_forms(ref: str, form: HandlerForm) -> None:
    assert handler_form(ref) is form
    assert check_remote_ref(ref) is form


def test_lambda_targets() -> None:
    assert parse_lambda_ref(ARN, "us-east-1") == LambdaTarget(ARN, "eu-west-1", None)
    assert parse_lambda_ref(ARN + ":7", "us-east-1") == LambdaTarget(ARN + ":7", "eu-west-1", "7")
    assert parse_lambda_ref("lambda:f", "ap-southeast-2") == LambdaTarget(
        "f", "ap-southeast-2", None
    )
    assert parse_lambda_ref("lambda:f:$LATEST", "us-east-1").qualifier == "$LATEST"
    gov = "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f"
    assert parse_lambda_ref(gov, "us-east-1").region == "us-gov-west-1"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("http://", "has no host"),
        ("https:///path", "has no host"),
        ("ftp://example.com/x", "scheme 'ftp' is not supported"),
        ("http://example.com:99999/x", "is not a valid URL"),
        ("http://example.com/x#frag", "must not have a #fragment"),
        ("arn:aws:lambda:eu-west-1:1234:function:f", "is not a Lambda function ARN"),
        ("arn:aws:s3:::bucket", "is not a Lambda function ARN"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:", "is not a Lambda function ARN"),
        ("lambda:", "is not lambda:NAME[:QUALIFIER]"),
        ("lambda:bad name", "is not lambda:NAME[:QUALIFIER]"),
        ("lambda:f:a:b", "is not lambda:NAME[:QUALIFIER]"),
    ],
)
def test_malformed_references(ref: str, message: str) -> None:
    with pytest.raises(InvalidHandlerRef, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_remote_ref(ref)


def test_safe_url_drops_credentials_and_query() -> None:
    assert safe_url("https://user:pw@h.example:8443/p?token=abc#x") == "https://h.example:8443/p"
    assert safe_url("http://[::1]:9000/x") == "http://[::1]:9000/x"


def _problems(api: dict[str, Any], tmp_path: Path) -> list[str]:
    base: dict[str, Any] = {"name": "a", "type": "websocket"}
    with pytest.raises(ConfigError) as info:
        parse_config({"apis": [{**base, **api}]}, tmp_path)
    return info.value.problems


def test_config_errors_carry_key_paths(tmp_path: Path) -> None:
    problems = _problems(
        {
            "authorizer": {"handler": "lambda:bad name"},
            "routes": {
                "x": "https://",
                "y": "arn:aws:lambda:eu-west-1:1:function:f",
                "z": {"handler": "https://ok.example/z", "invocation_type": "Event"},
            },
        },
        tmp_path,
    )
    assert problems == [
        "apis[0].routes.z: invocation_type applies only to Lambda handlers "
        "(arn:aws:lambda:… or lambda:NAME)",
        "apis[0].authorizer.handler: handler 'lambda:bad name' is not lambda:NAME[:QUALIFIER] "
        "(NAME: 1-64 letters, digits, '-' or '_')",
        "apis[0].routes.x: handler URL 'https://' has no host",
        "apis[0].routes.y: handler 'arn:aws:lambda:eu-west-1:1:function:f' is not a Lambda "
        "function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])",
    ]


def test_http_and_lambda_blocks_are_validated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOCKWAY_TEST_UNSET", raising=False)
    monkeypatch.setenv("SOCKWAY_TEST_SET", "value")
    problems = _problems(
        {
            "http": {"secret": "s", "secret_env": "SOCKWAY_TEST_SET"},
            "lambda": {"invocation_type": "Async", "max_attempts": 0, "endpoint_url": "localhost"},
        },
        tmp_path,
    )
    assert any(p.startswith("apis[0].http: ") and "not both" in p for p in problems), problems
    assert any(p.startswith("apis[0].lambda.invocation_type: ") for p in problems), problems
    assert any(p.startswith("apis[0].lambda.max_attempts: ") for p in problems), problems
    assert any(p.startswith("apis[0].lambda.endpoint_url: ") for p in problems), problems
    problems = _problems({"http": {"secret_env": "SOCKWAY_TEST_UNSET"}}, tmp_path)
    assert problems == [
        "apis[0].http.secret_env: environment variable 'SOCKWAY_TEST_UNSET' is not set"
    ]
    problems = _problems({"http": {"headers": {"x-sockway-signature": "forged"}}}, tmp_path)
    assert problems == [
        "apis[0].http.headers: 'x-sockway-signature' is set by sockway and cannot be overridden"
    ]


def test_secrets_stay_out_of_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKWAY_TEST_SECRET", "from-the-environment")
    settings = parse_config(
        {
            "apis": [
                {
                    "name": "a",
                    "type": "websocket",
                    "http": {
                        "secret_env": "SOCKWAY_TEST_SECRET",
                        "headers": {"Authorization": "B t"},
                    },
                    "routes": {"$default": "https://example.com/x"},
                }
            ]
        },
        tmp_path,
    )
    http = settings.apis[0].http
    assert http.signing_key() == b"from-the-environment"
    assert "Authorization" not in repr(settings)
    assert "from-the-environment" not in repr(settings)
