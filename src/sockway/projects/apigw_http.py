"""``HTTP_PROXY`` integrations and route request parameters of ``AWS::ApiGatewayV2`` WebSocket
APIs → sockway ``http_proxy`` routes (README "HTTP_PROXY integrations"; ``runtimes.http_proxy``
serves them).

Read: the Integration's ``IntegrationUri`` (an http(s) URL), ``IntegrationMethod`` (default
``POST``), ``RequestParameters`` (checked here, so a mapping sockway cannot evaluate is a problem
naming the logical id, not a start-up surprise), and the Route's ``RequestParameters``, which
only declare the ``$connect`` headers and query strings a mapping may read (AWS "Set up data
mapping for WebSocket APIs": route request parameters are "supported only for the $connect
route").
"""

from __future__ import annotations

import re
from typing import Any

from sockway.projects.problems import Findings
from sockway.projects.resources import Resource
from sockway.runtimes.request_parameters import (
    ParameterMapping,
    RequestParameterError,
    connect_only,
    parse_mapping,
)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_ROUTE_PARAMETER = re.compile(r"^route\.request\.(header|querystring)\.[a-zA-Z0-9._$\-]+$")


def http_proxy_route(
    integration: Resource, route: Resource, timeout_s: float, findings: Findings
) -> dict[str, Any] | None:
    """The sockway route of ``route`` served by the HTTP_PROXY ``integration``, or None with
    the problems recorded in ``findings``."""
    props = integration.properties
    uri = props.get("IntegrationUri")
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
        findings.problem(integration.where("IntegrationUri"), "must be an http(s) URL")
        return None
    method = props.get("IntegrationMethod", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        findings.problem(
            integration.where("IntegrationMethod"),
            f"{method!r}: one of {', '.join(sorted(METHODS))}",
        )
        return None
    parameters = props.get("RequestParameters") or {}
    if not isinstance(parameters, dict):
        findings.problem(integration.where("RequestParameters"), "must be a map")
        return None
    parameters = {str(k): v for k, v in parameters.items()}
    mappings: list[ParameterMapping] = []
    for name, value in parameters.items():  # each entry on its own: every bad one is named
        try:
            mappings.extend(parse_mapping({name: value}))
        except RequestParameterError as exc:
            findings.problem(integration.where("RequestParameters"), str(exc))
    reads = connect_only(tuple(mappings))
    key = route.properties.get("RouteKey")
    if reads and key != "$connect":
        findings.problem(
            integration.where("RequestParameters"),
            f"{', '.join(reads)}: route request headers and query strings exist only on "
            f"$connect, and route {route.logical_id} ({key}) uses this integration",
        )
        return None
    if len(mappings) < len(parameters):
        return None
    return {
        "handler": uri,
        "timeout_s": timeout_s,
        "http_proxy": {"method": method.upper(), "request_parameters": parameters},
    }


def check_route_parameters(route: Resource, findings: Findings) -> None:
    """A route's ``RequestParameters`` only declare what ``$connect`` may carry; sockway does
    not reject a request that lacks a ``Required`` one, so ``Required: true`` is a problem."""
    declared = route.properties.get("RequestParameters")
    if not declared:
        return
    if not isinstance(declared, dict):
        findings.problem(route.where("RequestParameters"), "must be a map")
        return
    for name, options in declared.items():
        where = route.where("RequestParameters", str(name))
        if not _ROUTE_PARAMETER.match(str(name)):
            findings.problem(
                where, "only route.request.header.NAME / route.request.querystring.NAME"
            )
        elif route.properties.get("RouteKey") != "$connect":
            findings.problem(where, "route request parameters exist only on $connect")
        required = options.get("Required") if isinstance(options, dict) else None
        if required in (True, "true", "True"):
            findings.problem(
                f"{where}.Required", "required route parameters are not enforced by sockway"
            )
