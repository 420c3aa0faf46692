"""Request parameter mapping of HTTP_PROXY integrations (README "HTTP_PROXY integrations").

What API Gateway documents (AWS developer guide, "Set up data mapping for WebSocket APIs",
``websocket-api-data-mapping``; the Integration's ``RequestParameters`` in the apigatewayv2
service model): the key is an integration request parameter,
``integration.request.header.NAME`` or ``integration.request.querystring.NAME``; the value is one
of

- ``route.request.header.NAME`` / ``route.request.querystring.NAME`` and their
  ``multivalueheader`` / ``multivaluequerystring`` forms ("supported only for the $connect
  route");
- ``route.request.body.JSONPATH`` (a JSONPath into the JSON message, written without ``$.``, as
  REST's ``method.request.body.petstore.pets[0].name``; sockway also accepts a leading ``$.``)
  and ``route.request.body`` (the whole body, as REST's ``method.request.body``);
- ``stageVariables.NAME``;
- ``context.NAME``, one of the documented context variables that sockway's events carry
  (``CONTEXT_VARIABLES``, plus ``context.authorizer.KEY``);
- ``'STATIC VALUE'`` in single quotes.

Names match ``^[a-zA-Z0-9._$-]+$`` (the documented pattern). Where the documentation is silent
sockway chooses: a source that has no value (a missing header, a path not in the body, a message
that is not JSON) leaves the parameter out; a non-string JSON value is sent as its JSON text;
a multi-value source becomes a comma-joined header, or a repeated query parameter.

Pure: parsing happens when the configuration is read (``parse_mapping`` raises
``RequestParameterError`` with the offending key), evaluation on each call (``evaluate``,
on the Lambda proxy event sockway built for the route, apigw spec §1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

_NAME = r"[a-zA-Z0-9._$\-]+"
_TARGET = re.compile(rf"^integration\.request\.(header|querystring)\.({_NAME})$")
_ROUTE = re.compile(
    rf"^route\.request\.(header|querystring|multivalueheader|multivaluequerystring)\.({_NAME})$"
)
_STAGE = re.compile(rf"^stageVariables\.({_NAME})$")
_PATH_PART = re.compile(r"\.([A-Za-z_$][\w$\-]*)|\[(\d+)\]|\['([^']*)'\]")

# Context variables of the WebSocket mapping reference that sockway's requestContext carries.
CONTEXT_VARIABLES = {
    "connectionId": ("connectionId",),
    "connectedAt": ("connectedAt",),
    "domainName": ("domainName",),
    "eventType": ("eventType",),
    "messageId": ("messageId",),
    "routeKey": ("routeKey",),
    "requestId": ("requestId",),
    "extendedRequestId": ("extendedRequestId",),
    "apiId": ("apiId",),
    "stage": ("stage",),
    "requestTime": ("requestTime",),
    "requestTimeEpoch": ("requestTimeEpoch",),
    "identity.sourceIp": ("identity", "sourceIp"),
    "identity.userAgent": ("identity", "userAgent"),
    "authorizer.principalId": ("authorizer", "principalId"),
}
# Only the $connect route request has headers and a query string (§1.2).
CONNECT_ONLY = frozenset({"header", "querystring", "multivalueheader", "multivaluequerystring"})


class RequestParameterError(ValueError):
    """A mapping sockway cannot honour; the message starts with the offending key."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value comes from: ``kind`` is ``static``, ``header`` … ``multivaluequerystring``,
    ``body``, ``stage`` or ``context``; ``path`` is the name or JSONPath steps."""

    kind: str
    path: tuple[str | int, ...] = ()
    static: str = ""


@dataclass(frozen=True, slots=True)
class ParameterMapping:
    """One ``integration.request.<location>.<name>`` ← source entry."""

    location: str  # "header" | "querystring"
    name: str
    source: Source
    text: str  # the value as written, for messages


def _json_path(key: str, expression: str) -> tuple[str | int, ...]:
    if expression.startswith("$"):
        text = expression[1:]
    else:
        text = expression if expression.startswith("[") else "." + expression
    if text in ("", "."):
        raise RequestParameterError(f"{key}: route.request.body. needs a JSONPath (e.g. a.b[0])")
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PATH_PART.match(text, pos)
        if match is None:
            raise RequestParameterError(
                f"{key}: JSONPath {expression!r} is not supported at {text[pos:]!r} (sockway "
                "reads names, [index] and ['name'] steps)"
            )
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        pos = match.end()
    return tuple(steps)


def parse_source(key: str, value: str) -> Source:
    """The source of one mapping value; raises ``RequestParameterError``."""
    if len(value) >= 2 and value.startswith("'") and value.endswith("'"):
        return Source("static", static=value[1:-1])
    if match := _ROUTE.match(value):
        return Source(match.group(1), (match.group(2),))
    if value == "route.request.body":
        return Source("body")
    if value.startswith(("route.request.body.", "route.request.body[")):
        rest = value.removeprefix("route.request.body")
        return Source("body", _json_path(key, rest.removeprefix(".")))
    if match := _STAGE.match(value):
        return Source("stage", (match.group(1),))
    if value.startswith("context."):
        name = value.removeprefix("context.")
        if name in CONTEXT_VARIABLES:
            return Source("context", CONTEXT_VARIABLES[name])
        if name.startswith("authorizer.") and re.fullmatch(_NAME, name[11:]):
            return Source("context", ("authorizer", name[11:]))
        raise RequestParameterError(
            f"{key}: {value!r}: sockway's events carry these context variables: "
            + ", ".join(f"context.{n}" for n in CONTEXT_VARIABLES)
            + ", context.authorizer.KEY"
        )
    raise RequestParameterError(
        f"{key}: {value!r} is not a mapping expression: use route.request.header.NAME, "
        "route.request.querystring.NAME, route.request.body.JSONPATH, stageVariables.NAME, "
        "context.NAME or a 'static value' in single quotes"
    )


def parse_mapping(parameters: Mapping[str, Any]) -> tuple[ParameterMapping, ...]:
    """Every entry of a ``RequestParameters`` map, checked; raises ``RequestParameterError``."""
    out: list[ParameterMapping] = []
    for key, value in parameters.items():
        target = _TARGET.match(str(key))
        if target is None:
            raise RequestParameterError(
                f"{key}: only integration.request.header.NAME and "
                "integration.request.querystring.NAME can be mapped (names of letters, digits "
                "and . _ $ -)"
            )
        if not isinstance(value, str) or not value:
            raise RequestParameterError(f"{key}: the value must be a non-empty string")
        source = parse_source(str(key), value)
        out.append(ParameterMapping(target.group(1), target.group(2), source, value))
    return tuple(out)


def connect_only(mappings: tuple[ParameterMapping, ...]) -> list[str]:
    """The values that read the route request's headers or query string (``$connect`` only)."""
    return [m.text for m in mappings if m.source.kind in CONNECT_ONLY]


def _lookup(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return None
            value = value[step]
        elif isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _case_insensitive(table: Any, name: str) -> Any:
    if not isinstance(table, dict):
        return None
    low = name.lower()
    for key, value in table.items():
        if str(key).lower() == low:
            return value
    return None


def _values(source: Source, event: Mapping[str, Any], parsed_body: list[Any]) -> list[str]:
    kind = source.kind
    if kind == "static":
        return [source.static]
    if kind in ("header", "multivalueheader"):
        table = "headers" if kind == "header" else "multiValueHeaders"
        found = _case_insensitive(event.get(table), str(source.path[0]))
    elif kind in ("querystring", "multivaluequerystring"):
        table = (
            "queryStringParameters"
            if kind == "querystring"
            else ("multiValueQueryStringParameters")
        )
        params = event.get(table)
        found = params.get(source.path[0]) if isinstance(params, dict) else None
    elif kind == "stage":
        variables = event.get("stageVariables")
        found = variables.get(source.path[0]) if isinstance(variables, dict) else None
    elif kind == "context":
        found = _lookup(event.get("requestContext"), source.path)
    else:  # body
        body = event.get("body")
        if not source.path:
            found = body
        else:
            if not parsed_body:
                try:
                    parsed_body.append(orjson.loads(body) if isinstance(body, str) else None)
                except orjson.JSONDecodeError:
                    parsed_body.append(None)
            found = _lookup(parsed_body[0], source.path)
    if isinstance(found, list) and kind.startswith("multivalue"):
        return [str(v) for v in found]
    text = _text(found)
    return [] if text is None else [text]


def evaluate(
    mappings: tuple[ParameterMapping, ...], event: Mapping[str, Any]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(headers, query parameters) the mappings give for one proxy ``event``."""
    headers: dict[str, str] = {}
    query: list[tuple[str, str]] = []
    parsed_body: list[Any] = []  # the body is parsed at most once, only if a mapping reads it
    for mapping in mappings:
        values = _values(mapping.source, event, parsed_body)
        if not values:
            continue
        if mapping.location == "header":
            headers[mapping.name] = ",".join(values)
        else:
            query.extend((mapping.name, v) for v in values)
    return headers, query
