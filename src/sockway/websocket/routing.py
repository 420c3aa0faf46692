"""Route selection expressions (apigw spec §2).

Supported language, as AWS documents it:

- ``$request.body.<path>`` or ``${request.body.<path>}``; ``<path>`` is a JSONPath of dotted
  keys and ``[n]`` indexes (``$request.body.a.b[0].c``);
- templates mixing literal text and several variables:
  ``${request.body.service}/${request.body.action}``;
- ``\\$`` escapes a dollar (``\\$default`` is the literal ``$default``); static text is itself;
- a path that is not found evaluates to ``""``; scalars are stringified as JSON text
  (``5``, ``true``), strings as themselves, arrays as ``[a, b]``, objects as JSON;
- a message that is not JSON cannot be evaluated and goes to ``$default``; so does one nested
  deeper than the parser's recursion allows (``RecursionError``, ~1,000 levels): selection
  never raises on a client's message;
- the result ``$connect`` / ``$disconnect`` never selects the lifecycle routes (§2 [inferred]).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

DEFAULT_ROUTE = "$default"
CONNECT_ROUTE = "$connect"
DISCONNECT_ROUTE = "$disconnect"
LIFECYCLE_ROUTES = frozenset({CONNECT_ROUTE, DISCONNECT_ROUTE})

_BODY_PREFIX = "request.body"
_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
# An unbraced variable runs over name characters, dots and [n] indexes.
_UNBRACED = re.compile(r"[A-Za-z0-9_.\-\[\]]+")


class ExpressionError(ValueError):
    """The expression cannot be parsed or uses an unsupported variable."""


@dataclass(frozen=True, slots=True)
class _Var:
    path: tuple[str | int, ...]


_Part = str | _Var


def _parse_path(variable: str) -> tuple[str | int, ...]:
    if variable == _BODY_PREFIX:
        return ()
    if not variable.startswith(_BODY_PREFIX):
        raise ExpressionError(
            f"unsupported variable '${variable}': route selection reads only $request.body.*"
        )
    rest = variable[len(_BODY_PREFIX) :]
    path: list[str | int] = []
    pos = 0
    while pos < len(rest):
        m = _PATH_TOKEN.match(rest, pos)
        if m is None:
            raise ExpressionError(f"invalid JSON path in '${variable}' at '{rest[pos:]}'")
        path.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    return tuple(path)


@dataclass(frozen=True, slots=True)
class SelectionExpression:
    """A compiled route selection expression."""

    source: str
    parts: tuple[_Part, ...]
    # Computed once here, not per message (bench, echo route: the per-message any() was 4.6 %
    # of the gateway's samples).
    reads_body: bool = field(init=False)
    # The usual expression, ``$request.body.action``: one top-level key and nothing else, read
    # without the general path's list, generators and join (issue 18, two-way route profile).
    single_key: str | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads_body", any(isinstance(p, _Var) for p in self.parts))
        only = self.parts[0] if len(self.parts) == 1 else None
        single = (
            only.path[0]
            if isinstance(only, _Var) and len(only.path) == 1 and isinstance(only.path[0], str)
            else None
        )
        object.__setattr__(self, "single_key", single)

    @classmethod
    def compile(cls, source: str) -> SelectionExpression:
        parts: list[_Part] = []
        literal: list[str] = []
        i, n = 0, len(source)
        while i < n:
            ch = source[i]
            if ch == "\\" and i + 1 < n and source[i + 1] == "$":
                literal.append("$")
                i += 2
                continue
            if ch != "$":
                literal.append(ch)
                i += 1
                continue
            if literal:
                parts.append("".join(literal))
                literal = []
            if i + 1 < n and source[i + 1] == "{":
                end = source.find("}", i + 2)
                if end < 0:
                    raise ExpressionError(f"unclosed '${{' in '{source}'")
                variable = source[i + 2 : end]
                i = end + 1
            else:
                m = _UNBRACED.match(source, i + 1)
                if m is None:
                    raise ExpressionError(f"'$' without a variable name in '{source}'")
                variable = m.group(0)
                i = m.end()
            parts.append(_Var(_parse_path(variable)))
        if literal:
            parts.append("".join(literal))
        return cls(source, tuple(parts))

    def evaluate(self, body: str) -> str | None:
        """The selected route key for a message body, or None if the body cannot be evaluated."""
        try:
            return self._evaluate(body)
        except RecursionError:
            # A body nested deeper than the stdlib parser (or the stringifier) can recurse:
            # unreadable, as non-JSON is (§2: such a message goes to $default).
            return None

    def _evaluate(self, body: str) -> str | None:
        if not self.reads_body:
            return "".join(p for p in self.parts if isinstance(p, str))
        key = self.single_key
        if key is not None:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
            else:
                if not isinstance(doc, dict):
                    return ""  # nothing to select: as the general path's absent value
                value = doc.get(key, _MISSING)
                if isinstance(value, str):
                    return value
                if value is _MISSING:
                    return ""
                # a number, object, ...: the general path keeps its text as written
        # orjson first (~5x faster than the stdlib parser on a small message; bench/ANALYSIS):
        # when every selected value is a string or absent, its answer is the same. Anything
        # else (a number, whose text only the stdlib parser keeps exactly, or a body orjson
        # refuses: NaN, lone surrogates, huge integers) takes the stdlib path below.
        try:
            fast = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # orjson also refuses nesting over 1,024 levels: the stdlib path decides
        else:
            values = [p if isinstance(p, str) else _lookup(fast, p.path) for p in self.parts]
            if all(isinstance(v, str) or v is _MISSING for v in values):
                return "".join(v for v in values if v is not _MISSING)
        try:
            # The stdlib parser keeps every number's text (no float/64-bit range limits), so a
            # number is stringified as written.
            doc = _DECODER.decode(body)
        except ValueError:
            return None
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(_stringify(_lookup(doc, part.path)))
        return "".join(out)


_MISSING = object()


class _Num(str):
    """A JSON number, kept as its source text."""


# One decoder for every message: json.loads with hooks builds a new JSONDecoder per call
# (bench, echo route: JSONDecoder.__init__ alone was 1.5 % of the gateway's samples).
_DECODER = json.JSONDecoder(parse_int=_Num, parse_float=_Num, parse_constant=_Num)


def _lookup(doc: Any, path: tuple[str | int, ...]) -> Any:
    cur = doc
    for key in path:
        if isinstance(key, int):
            if not isinstance(cur, list) or key >= len(cur):
                return _MISSING
            cur = cur[key]
        else:
            if not isinstance(cur, dict) or key not in cur:
                return _MISSING
            cur = cur[key]
    return cur


def _stringify(value: Any) -> str:
    """Scalars as JSON text, strings as themselves, arrays as ``[a, b]``, objects as JSON."""
    if value is _MISSING:
        return ""
    if isinstance(value, str):  # _Num included: its text
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_stringify(v) for v in value) + "]"
    return _compact(value)


def _compact(value: Any) -> str:
    if isinstance(value, _Num):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_compact(k)}:{_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def select_route(expr: SelectionExpression, body: str, routes: frozenset[str]) -> str | None:
    """The route key a message goes to: an exact custom route, else ``$default``, else None.

    ``routes`` holds the configured route keys (lifecycle routes included or not: they are
    never selected).
    """
    key = expr.evaluate(body)
    if key is not None and key in routes and key not in LIFECYCLE_ROUTES:
        return key
    if DEFAULT_ROUTE in routes:
        return DEFAULT_ROUTE
    return None
