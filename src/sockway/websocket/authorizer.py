"""REQUEST Lambda authorizer on ``$connect`` (apigw spec §5).

Pure functions: checking identity sources before invoking, and turning the authorizer's answer
into a decision plus the ``requestContext.authorizer`` object stored with the connection.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SOURCE = re.compile(r"^route\.request\.(header|querystring)\.(.+)$|^stageVariables\.(.+)$")


class IdentitySourceError(ValueError):
    """An identity source expression that sockway does not understand (a config error)."""


def check_identity_source(source: str) -> None:
    if _SOURCE.match(source) is None:
        raise IdentitySourceError(
            f"unsupported identity source '{source}' (use route.request.header.<Name>, "
            "route.request.querystring.<name> or stageVariables.<name>)"
        )


def identity_present(
    sources: Sequence[str],
    headers: Sequence[tuple[str, str]],
    query: Sequence[tuple[str, str]],
    stage_variables: Mapping[str, str],
) -> bool:
    """True when every listed identity source is present and non-empty (§5.1: else 401)."""
    lowered = {k.lower(): v for k, v in headers}
    qs = dict(query)
    for source in sources:
        m = _SOURCE.match(source)
        if m is None:
            return False
        kind, name, stage_var = m.group(1), m.group(2), m.group(3)
        if stage_var is not None:
            value = stage_variables.get(stage_var)
        elif kind == "header":
            value = lowered.get(name.lower())
        else:
            value = qs.get(name)
        if not value:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of an authorizer call: HTTP status to reject with, or the context to keep."""

    status: int  # 200 allow, 401/403 reject, 500 bad authorizer answer
    authorizer: dict[str, Any] | None = None
    problem: str | None = None  # for the operator's log when status is 500


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [value]


def _matches(patterns: Any, value: str) -> bool:
    for pattern in _as_list(patterns):
        if isinstance(pattern, str) and fnmatch.fnmatchcase(value, pattern):
            return True
    return False


def _action_matches(actions: Any) -> bool:
    for action in _as_list(actions):
        if isinstance(action, str) and fnmatch.fnmatchcase("execute-api:invoke", action.lower()):
            return True
    return False


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decide(result: Any, method_arn: str, latency_ms: int) -> Decision:
    """Evaluate the authorizer's response (§5.3) against the ``$connect`` method ARN.

    An explicit Deny wins over Allow; no statement allowing the ARN is a Deny (403). A response
    without ``principalId`` or ``policyDocument``, or with a non-scalar context value, is an
    invalid authorizer answer (500). Context values are stringified as REST does (§5.4,
    recommended), and the result is ``{"principalId": ..., <context>, "integrationLatency": ms}``.
    """
    if not isinstance(result, dict):
        return Decision(500, problem="authorizer returned a non-object")
    principal = result.get("principalId")
    if principal is None or isinstance(principal, (dict, list)):
        return Decision(500, problem="authorizer response has no principalId")
    policy = result.get("policyDocument")
    if not isinstance(policy, dict) or "Statement" not in policy:
        return Decision(500, problem="authorizer response has no policyDocument.Statement")
    context = result.get("context") or {}
    if not isinstance(context, dict):
        return Decision(500, problem="authorizer context must be an object")
    for key, value in context.items():
        if isinstance(value, (dict, list)) or value is None:
            return Decision(
                500, problem=f"authorizer context value '{key}' must be a string, number or boolean"
            )
    allowed = denied = False
    for statement in _as_list(policy["Statement"]):
        if not isinstance(statement, dict):
            return Decision(500, problem="policy statement must be an object")
        if not _action_matches(statement.get("Action")):
            continue
        if not _matches(statement.get("Resource"), method_arn):
            continue
        effect = str(statement.get("Effect", "")).lower()
        if effect == "deny":
            denied = True
        elif effect == "allow":
            allowed = True
    if denied or not allowed:
        return Decision(403)
    ctx: dict[str, Any] = {"principalId": _stringify(principal)}
    ctx.update({k: _stringify(v) for k, v in context.items()})
    ctx["integrationLatency"] = latency_ms
    return Decision(200, authorizer=ctx)
