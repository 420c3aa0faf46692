"""The forms a handler reference takes, told apart without importing anything.

- ``http://…`` / ``https://…`` — an HTTP endpoint (``runtimes.http``);
- ``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`` — a real AWS Lambda function
  (also the ``aws-cn`` and ``aws-us-gov`` partitions);
- ``lambda:NAME[:QUALIFIER]`` — a Lambda function in the API's ``region``
  (``runtimes.aws_lambda``);
- anything else — ``module.function``, a Python function (in-process or a worker process).

Pure functions: the config models use them to validate references and per-handler options, so
this module imports neither aiohttp nor botocore.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit


class HandlerForm(Enum):
    PYTHON = "python"
    HTTP = "http"
    LAMBDA = "lambda"


class InvalidHandlerRef(ValueError):
    """A reference that has a recognised form (URL, ARN, ``lambda:``) but is malformed."""


_LAMBDA_PREFIX = "lambda:"
# Lambda's own patterns: function names 1-64 of [A-Za-z0-9-_]; a qualifier is $LATEST, a
# version number or an alias (1-128 of [A-Za-z0-9-_], not all digits for an alias).
_NAME = r"[A-Za-z0-9_\-]{1,64}"
_QUALIFIER = r"\$LATEST|[A-Za-z0-9_\-]{1,128}"
_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov):lambda:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):"
    rf"(?P<account>\d{{12}}):function:(?P<name>{_NAME})(?::(?P<qualifier>{_QUALIFIER}))?$"
)
_SHORT = re.compile(rf"^lambda:(?P<name>{_NAME})(?::(?P<qualifier>{_QUALIFIER}))?$")
ARN_FORMAT = "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]"


@dataclass(frozen=True, slots=True)
class LambdaTarget:
    """A Lambda function to invoke: ``function_name`` is what goes into the Invoke call."""

    function_name: str  # the full ARN, or the bare name for ``lambda:NAME``
    region: str
    qualifier: str | None


def handler_form(ref: str) -> HandlerForm:
    """Which runtime serves ``ref`` (by its form only; see ``check_remote_ref`` for validity)."""
    if "://" in ref:
        return HandlerForm.HTTP
    if ref.startswith(("arn:", _LAMBDA_PREFIX)):
        return HandlerForm.LAMBDA
    return HandlerForm.PYTHON


def check_http_url(ref: str) -> str:
    """Return ``ref`` if it is an absolute http(s) URL with a host; else ``InvalidHandlerRef``."""
    try:
        parts = urlsplit(ref)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidHandlerRef(f"handler '{safe_url(ref)}' is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidHandlerRef(
            f"handler URL scheme '{parts.scheme}' is not supported (use http:// or https://)"
        )
    if not parts.hostname:
        raise InvalidHandlerRef(f"handler URL '{safe_url(ref)}' has no host")
    if parts.fragment:
        raise InvalidHandlerRef(f"handler URL '{safe_url(ref)}' must not have a #fragment")
    if port == 0:
        raise InvalidHandlerRef(f"handler URL '{safe_url(ref)}' has port 0")
    return ref


def parse_lambda_ref(ref: str, region: str) -> LambdaTarget:
    """``arn:…`` or ``lambda:NAME[:QUALIFIER]`` → what to invoke; ``region`` is the API's."""
    if ref.startswith(_LAMBDA_PREFIX):
        m = _SHORT.match(ref)
        if m is None:
            raise InvalidHandlerRef(
                f"handler '{ref}' is not lambda:NAME[:QUALIFIER] (NAME: 1-64 letters, digits, "
                "'-' or '_')"
            )
        return LambdaTarget(m["name"], region, m["qualifier"])
    m = _ARN.match(ref)
    if m is None:
        raise InvalidHandlerRef(f"handler '{ref}' is not a Lambda function ARN ({ARN_FORMAT})")
    return LambdaTarget(ref, m["region"], m["qualifier"])


def check_remote_ref(ref: str) -> HandlerForm:
    """Validate a URL or Lambda reference (``InvalidHandlerRef``); return the form."""
    form = handler_form(ref)
    if form is HandlerForm.HTTP:
        check_http_url(ref)
    elif form is HandlerForm.LAMBDA:
        parse_lambda_ref(ref, "us-east-1")
    return form


def safe_url(url: str) -> str:
    """``url`` for logs: without user info, query string or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}"
