"""``AWS::ApiGatewayV2::*`` WebSocket APIs → sockway ``type: websocket`` APIs (apigw spec §10.3).

Read: ``Api`` (``ProtocolType: WEBSOCKET``, ``RouteSelectionExpression``), ``Route``
(``RouteKey``, ``Target`` = ``integrations/{id}``, ``AuthorizationType`` ``NONE`` / ``CUSTOM`` with
``AuthorizerId`` on ``$connect``, ``RouteResponseSelectionExpression``, ``RequestParameters``
declaring optional ``$connect`` headers and query strings), ``RouteResponse``
(``$default``: with the route's ``RouteResponseSelectionExpression: $default`` the route is
two-way), ``Integration`` (``AWS_PROXY`` to a template function, the integration URI as the bare
function ARN or the ``arn:aws:apigateway:…:lambda:path/2015-03-31/functions/{arn}/invocations``
form; ``HTTP_PROXY`` to a URL with ``IntegrationMethod`` and ``RequestParameters``, served as
API Gateway does, ``projects.apigw_http``; ``TimeoutInMillis``), ``Authorizer``
(``REQUEST``, ``AuthorizerUri``, ``IdentitySource``), ``Stage`` (``StageName``, ``StageVariables``).
Anything that changes what a client sees and sockway cannot do is a problem naming the
logical id and property; the rest is listed as not emulated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sockway.projects.apigw_http import check_route_parameters, http_proxy_route
from sockway.projects.lambda_functions import FunctionDef
from sockway.projects.problems import Findings
from sockway.projects.resources import Resource, by_type

API = "AWS::ApiGatewayV2::Api"
ROUTE = "AWS::ApiGatewayV2::Route"
ROUTE_RESPONSE = "AWS::ApiGatewayV2::RouteResponse"
INTEGRATION = "AWS::ApiGatewayV2::Integration"
AUTHORIZER = "AWS::ApiGatewayV2::Authorizer"
STAGE = "AWS::ApiGatewayV2::Stage"
DEPLOYMENT = "AWS::ApiGatewayV2::Deployment"
INTEGRATION_RESPONSE = "AWS::ApiGatewayV2::IntegrationResponse"
# Read by this module (the rest of AWS::ApiGatewayV2::* is listed as not emulated).
TYPES = (API, ROUTE, ROUTE_RESPONSE, INTEGRATION, AUTHORIZER, STAGE, DEPLOYMENT)

_FUNCTION_NAME = re.compile(r":function:([A-Za-z0-9_\-]+)")
DEFAULT_INTEGRATION_TIMEOUT_S = 29.0


@dataclass(frozen=True)
class _Props:
    """Which properties a resource type reads, lists as not emulated, or refuses."""

    read: frozenset[str]
    not_emulated: frozenset[str]


_PROPS = {
    API: _Props(
        frozenset({"ProtocolType", "RouteSelectionExpression", "ApiKeySelectionExpression"}),
        frozenset(
            {
                "Name",
                "Description",
                "Tags",
                "DisableExecuteApiEndpoint",
                "DisableSchemaValidation",
                "Version",
                "FailOnWarnings",
            }
        ),
    ),
    ROUTE: _Props(
        frozenset(
            {
                "ApiId",
                "RouteKey",
                "Target",
                "AuthorizationType",
                "AuthorizerId",
                "ApiKeyRequired",
                "RouteResponseSelectionExpression",
                "RequestParameters",
            }
        ),
        frozenset({"OperationName"}),
    ),
    ROUTE_RESPONSE: _Props(frozenset({"ApiId", "RouteId", "RouteResponseKey"}), frozenset()),
    INTEGRATION: _Props(
        frozenset(
            {
                "ApiId",
                "IntegrationType",
                "IntegrationUri",
                "IntegrationMethod",
                "RequestParameters",
                "TimeoutInMillis",
                "ConnectionType",
            }
        ),
        frozenset(
            {
                "CredentialsArn",
                "Description",
                "PassthroughBehavior",
                "PayloadFormatVersion",
                "ContentHandlingStrategy",
            }
        ),
    ),
    AUTHORIZER: _Props(
        frozenset({"ApiId", "AuthorizerType", "AuthorizerUri", "IdentitySource"}),
        frozenset({"Name", "AuthorizerCredentialsArn", "AuthorizerResultTtlInSeconds"}),
    ),
    STAGE: _Props(
        frozenset({"ApiId", "StageName", "StageVariables"}),
        frozenset(
            {
                "DeploymentId",
                "AutoDeploy",
                "Description",
                "Tags",
                "AccessLogSettings",
                "DefaultRouteSettings",
                "RouteSettings",
                "ClientCertificateId",
            }
        ),
    ),
    DEPLOYMENT: _Props(frozenset(), frozenset({"ApiId", "StageName", "Description"})),
}


# Descriptive properties: accepted without a word (they change nothing anywhere).
DESCRIPTIVE = frozenset(
    {"Name", "Description", "Tags", "OperationName", "DeploymentId", "AutoDeploy", "Version"}
)


def check_properties(resource: Resource, findings: Findings) -> None:
    """Refuse unknown properties; list the not-emulated ones present (once per resource)."""
    spec = _PROPS[resource.type]
    if resource.type == DEPLOYMENT:
        return  # a deployment only publishes the API: nothing to do locally
    ignored = sorted(
        k for k in resource.properties if k in spec.not_emulated and k not in DESCRIPTIVE
    )
    if ignored:
        findings.ignore(
            f"{resource.logical_id} ({resource.type}): {', '.join(ignored)} not emulated"
        )
    for key in resource.properties:
        if key not in spec.read and key not in spec.not_emulated:
            findings.problem(resource.where(key), f"not supported by sockway ({resource.type})")


@dataclass
class WebSocketReader:
    """Builds the sockway APIs of one template (see the module docstring)."""

    resources: dict[str, Resource]
    refs: dict[str, Any]  # logical id → its Ref value
    functions: dict[str, FunctionDef]  # function name → definition
    region: str
    account_id: str
    findings: Findings
    refused: set[str]  # names of the template's functions already refused (said once)

    def apis(self) -> list[dict[str, Any]]:
        for resource in by_type(self.resources, *TYPES):
            check_properties(resource, self.findings)
        out = []
        for api in by_type(self.resources, API):
            protocol = api.properties.get("ProtocolType")
            if protocol != "WEBSOCKET":
                self.findings.ignore(
                    f"{api.logical_id} ({API}): ProtocolType {protocol}: only WebSocket APIs "
                    "are served"
                )
                continue
            built = self._api(api)
            if built is not None:
                out.append(built)
        return out

    def _of_api(self, api: Resource, kind: str) -> list[Resource]:
        api_id = self.refs[api.logical_id]
        return [r for r in by_type(self.resources, kind) if r.properties.get("ApiId") == api_id]

    def _by_ref(self, kind: str, value: Any) -> Resource | None:
        for resource in by_type(self.resources, kind):
            if self.refs.get(resource.logical_id) == value:
                return resource
        return None

    def _api(self, api: Resource) -> dict[str, Any] | None:
        expression = api.properties.get("RouteSelectionExpression")
        if not isinstance(expression, str):
            self.findings.problem(
                api.where("RouteSelectionExpression"), "required for a WebSocket API"
            )
            return None
        extra: dict[str, Any] = {}
        stage = self._stage(api, extra)
        config: dict[str, Any] = {
            "name": api.logical_id,
            "type": "websocket",
            "api_id": self.refs[api.logical_id],
            "region": self.region,
            "account_id": self.account_id,
            "runtime": "process",
            "route_selection_expression": expression,
            "stage": stage,
            **extra,
        }
        two_way = {
            r.properties.get("RouteId")
            for r in self._of_api(api, ROUTE_RESPONSE)
            if r.properties.get("RouteResponseKey") == "$default"
        }
        for response in self._of_api(api, ROUTE_RESPONSE):
            key = response.properties.get("RouteResponseKey")
            if key != "$default":
                self.findings.problem(
                    response.where("RouteResponseKey"),
                    f"{key!r}: only $default route responses are supported",
                )
        routes: dict[str, Any] = {}
        for route in self._of_api(api, ROUTE):
            key = route.properties.get("RouteKey")
            if not isinstance(key, str):
                self.findings.problem(route.where("RouteKey"), "required")
                continue
            spec = self._route(api, route, self.refs[route.logical_id] in two_way)
            if spec is not None:
                routes[key] = spec
            if key == "$connect":
                self._connect_auth(api, route, config)
            elif route.properties.get("AuthorizationType", "NONE") != "NONE":
                self.findings.problem(
                    route.where("AuthorizationType"),
                    "only the $connect route can be authorized (API Gateway WebSocket APIs)",
                )
        config["routes"] = routes
        return config

    def _stage(self, api: Resource, extra: dict[str, Any]) -> str:
        stages = self._of_api(api, STAGE)
        if len(stages) > 1:
            names = ", ".join(s.logical_id for s in stages)
            self.findings.problem(
                f"{stages[1].logical_id}.Properties.StageName",
                f"API {api.logical_id} has several stages ({names}); sockway serves one stage "
                "per API: remove or condition out the others",
            )
        if stages:
            stage = stages[0]
            variables = stage.properties.get("StageVariables")
            if isinstance(variables, dict) and variables:
                extra["stage_variables"] = {str(k): str(v) for k, v in variables.items()}
            name = stage.properties.get("StageName")
            if isinstance(name, str):
                return name
            self.findings.problem(stage.where("StageName"), "required")
        for deployment in self._of_api(api, DEPLOYMENT):
            name = deployment.properties.get("StageName")
            if isinstance(name, str):
                return name
        self.findings.warn(f"{api.logical_id}: no Stage: served under the stage 'dev'")
        return "dev"

    def _route(self, api: Resource, route: Resource, has_response: bool) -> dict[str, Any] | None:
        props = route.properties
        if props.get("ApiKeyRequired") in (True, "true", "True"):
            self.findings.problem(route.where("ApiKeyRequired"), "API keys are not supported")
        selection = props.get("RouteResponseSelectionExpression")
        if selection is not None and selection != "$default":
            self.findings.problem(
                route.where("RouteResponseSelectionExpression"),
                f"{selection!r}: only $default is supported (as on API Gateway WebSocket APIs)",
            )
        two_way = selection == "$default" and has_response
        if (selection == "$default") != has_response:
            self.findings.warn(
                f"{route.logical_id}: one-way: a two-way route needs both "
                "RouteResponseSelectionExpression: $default and a $default RouteResponse"
            )
        target = props.get("Target")
        if not isinstance(target, str) or not target.startswith("integrations/"):
            self.findings.problem(route.where("Target"), "must be integrations/{IntegrationId}")
            return None
        integration = self._by_ref(INTEGRATION, target.removeprefix("integrations/"))
        if integration is None:
            self.findings.problem(route.where("Target"), f"{target}: no such integration")
            return None
        check_route_parameters(route, self.findings)
        spec = self._integration(integration, route)
        if spec is None:
            return None
        if two_way:
            spec["route_response"] = True
        return spec

    def _integration(self, integration: Resource, route: Resource) -> dict[str, Any] | None:
        props = integration.properties
        kind = props.get("IntegrationType")
        timeout = float(props.get("TimeoutInMillis", 29000)) / 1000
        if props.get("ConnectionType", "INTERNET") != "INTERNET":
            self.findings.problem(
                integration.where("ConnectionType"), "VPC links are not supported"
            )
        uri = props.get("IntegrationUri")
        if kind == "AWS_PROXY":
            if props.get("RequestParameters"):
                self.findings.problem(
                    integration.where("RequestParameters"),
                    "honoured only on HTTP_PROXY integrations (a Lambda proxy event carries "
                    "the whole request)",
                )
            function = self._function(integration, uri, "IntegrationUri")
            if function is None:
                return None
            return function.settings(timeout)
        if kind == "HTTP_PROXY":
            return http_proxy_route(integration, route, timeout, self.findings)
        self.findings.problem(
            integration.where("IntegrationType"),
            f"{kind!r}: only AWS_PROXY (Lambda proxy) and HTTP_PROXY integrations are supported",
        )
        return None

    def _function(self, resource: Resource, uri: Any, key: str) -> FunctionDef | None:
        match = _FUNCTION_NAME.search(uri) if isinstance(uri, str) else None
        if match is None:
            self.findings.problem(resource.where(key), f"{uri!r} names no Lambda function")
            return None
        function = self.functions.get(match.group(1))
        if function is None and match.group(1) not in self.refused:
            self.findings.problem(
                resource.where(key),
                f"function '{match.group(1)}' is not a (served) function of this template",
            )
        return function

    def _connect_auth(self, api: Resource, route: Resource, config: dict[str, Any]) -> None:
        kind = route.properties.get("AuthorizationType", "NONE")
        if kind == "NONE":
            return
        if kind != "CUSTOM":
            self.findings.problem(
                route.where("AuthorizationType"),
                f"{kind}: only NONE and CUSTOM (a REQUEST Lambda authorizer) are supported",
            )
            return
        authorizer = self._by_ref(AUTHORIZER, route.properties.get("AuthorizerId"))
        if authorizer is None:
            self.findings.problem(route.where("AuthorizerId"), "names no authorizer of the API")
            return
        props = authorizer.properties
        if props.get("AuthorizerType") != "REQUEST":
            self.findings.problem(
                authorizer.where("AuthorizerType"),
                f"{props.get('AuthorizerType')!r}: only REQUEST authorizers are supported",
            )
            return
        function = self._function(authorizer, props.get("AuthorizerUri"), "AuthorizerUri")
        if function is None:
            return
        spec = function.settings(DEFAULT_INTEGRATION_TIMEOUT_S)
        sources = props.get("IdentitySource")
        if sources:
            spec["identity_source"] = sources if isinstance(sources, list) else [sources]
        config["authorizer"] = spec
