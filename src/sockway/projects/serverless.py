"""serverless.yml → a CloudFormation document → sockway's configuration (apigw spec §10.2).

As the Serverless Framework does, the service is compiled into CloudFormation and that template
read by ``projects.template``: each function becomes ``{Name}LambdaFunction``, the WebSocket
API ``WebsocketsApi`` with its ``…WebsocketsRoute`` / ``…WebsocketsIntegration`` /
``…WebsocketsAuthorizer`` resources and the stage ``WebsocketsDeploymentStage``, and
``resources:`` (``Resources``, ``Outputs``, ``Conditions``) is merged in, so its DynamoDB tables
are created like a template's.

Read: ``service``, ``provider`` (``runtime``, ``stage``, ``region``, ``environment``,
``timeout`` — the Framework's default 6 s —, ``memorySize`` — 1024 MB —,
``websocketsApiRouteSelectionExpression``), ``functions`` (``handler``, ``runtime``,
``environment`` over the provider's, ``timeout``, ``memorySize``, ``reservedConcurrency``,
``events`` with ``websocket``: a route key, or ``{route, routeResponseSelectionExpression,
authorizer: NAME | {name, identitySource}}``), and the variables ``${self:…}``, ``${env:…}``,
``${opt:stage}``, ``${opt:region}``, ``${sls:stage}``, ``${aws:region}``, ``${aws:accountId}``
with fallbacks (``${env:X, 'default'}``, nested ``${self:custom.${opt:stage}}``). Other variable
sources (``file()``, ``ssm:``, ``cf:``, ``s3:``) are problems naming the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sockway.projects.cfn_yaml import TemplateReadError, load_template
from sockway.projects.intrinsics import Stack
from sockway.projects.problems import Findings, ProjectError
from sockway.projects.project import Project
from sockway.projects.template import read_document

_INNER = re.compile(r"\$\{([^${}]+)\}")
_WHOLE = re.compile(r"^\$\{([^${}]+)\}$")
DEFAULT_TIMEOUT_S = 6
DEFAULT_MEMORY_MB = 1024
_FUNCTION_KEYS_READ = {
    "handler",
    "runtime",
    "environment",
    "timeout",
    "memorySize",
    "reservedConcurrency",
    "events",
    "name",
}
_PROVIDER_KEYS_READ = {
    "name",
    "runtime",
    "stage",
    "region",
    "memorySize",
    "timeout",
    "environment",
    "websocketsApiRouteSelectionExpression",
    "websocketsApiName",
    "websocketsDescription",
}
_FUNCTION_KEYS_NOT_EMULATED = {
    "description",
    "role",
    "iamRoleStatements",
    "tags",
    "layers",
    "package",
    "tracing",
    "vpc",
    "architecture",
    "logRetentionInDays",
    "provisionedConcurrency",
    "maximumRetryAttempts",
    "maximumEventAge",
    "destinations",
    "disableLogs",
    "url",
}


class _Variables:
    """Serverless Framework variables, innermost first (``${a, b}`` takes the first found)."""

    def __init__(self, document: dict[str, Any], stage: str, region: str, account: str) -> None:
        self.document = document
        self.stage = stage
        self.region = region
        self.account = account
        self.findings = Findings()

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        for _ in range(10):
            whole = _WHOLE.match(value)
            if whole is not None:
                found = self._lookup(whole.group(1), where)
                if not isinstance(found, str) or "${" not in found:
                    return found
                value = found
                continue
            replaced = _INNER.sub(lambda m: str(self._lookup(m.group(1), where)), value)
            if replaced == value or "${" not in replaced:
                return replaced
            value = replaced
        self.findings.problem(where, f"variables nest too deep: {value!r}")
        return value

    def _lookup(self, expression: str, where: str) -> Any:
        for choice in _split_choices(expression):
            if (choice.startswith("'") and choice.endswith("'")) or (
                choice.startswith('"') and choice.endswith('"')
            ):
                return choice[1:-1]
            source, _, rest = choice.partition(":")
            found: Any = None
            if source == "self":
                found = self._self(rest)
            elif source == "env":
                found = os.environ.get(rest)
            elif choice in ("opt:stage", "sls:stage"):
                found = self.stage
            elif choice in ("opt:region", "aws:region"):
                found = self.region
            elif source == "aws" and rest == "accountId":
                found = self.account
            elif source == "sls" and rest == "instanceId":
                found = "sockway"
            elif not rest and re.fullmatch(r"-?\d+(\.\d+)?|true|false", choice):
                return _literal(choice)
            else:
                self.findings.problem(
                    where, f"${{{choice}}}: variable source not supported by sockway"
                )
                return ""
            if found is not None:
                if isinstance(found, str) and "${" in found:
                    found = self.resolve(found, where)
                return found
        self.findings.problem(where, f"${{{expression}}} has no value (and no fallback)")
        return ""

    def _self(self, path: str) -> Any:
        node: Any = self.document
        for part in path.split(".") if path else []:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def _split_choices(expression: str) -> list[str]:
    """``env:X, 'a, b'`` → ``["env:X", "'a, b'"]`` (commas inside quotes stay)."""
    out, current, quote = [], "", ""
    for char in expression:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current += char
        elif char == ",":
            out.append(current.strip())
            current = ""
        else:
            current += char
    out.append(current.strip())
    return [c for c in out if c]


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    return float(text) if "." in text else int(text)


def logical_name(name: str) -> str:
    """The Framework's normalised name: ``send-message`` → ``SendDashmessage``."""
    name = name.replace("-", "Dash").replace("_", "Underscore")
    name = re.sub(r"[^A-Za-z0-9]", "", name)
    return name[:1].upper() + name[1:]


def _route_name(route: str) -> str:
    return logical_name(route.replace("$", "S"))


def read_serverless(
    path: Path,
    *,
    local_host: str,
    state_dir: Path,
    stage: str | None = None,
    region: str | None = None,
) -> Project:
    """Translate a serverless.yml (see the module docstring); raise ``ProjectError``."""
    if path.is_dir():
        path = path / "serverless.yml"
    try:
        raw = load_template(path)
    except TemplateReadError as exc:
        raise ProjectError([str(exc)]) from None
    provider = raw.get("provider") if isinstance(raw.get("provider"), dict) else {}
    assert isinstance(provider, dict)
    account = "123456789012"
    # --stage and --region are ${opt:stage} and ${opt:region}; provider's values else.
    early = _Variables(raw, stage or "dev", region or "us-east-1", account)
    chosen_stage = stage or str(early.resolve(provider.get("stage", "dev"), "provider.stage"))
    if region is None:
        region = str(early.resolve(provider.get("region", "us-east-1"), "provider.region"))
    variables = _Variables(raw, chosen_stage, region, account)
    document = variables.resolve(raw, "")
    findings = variables.findings
    template = _compile(document, chosen_stage, findings)
    service = str(document.get("service", "service"))
    return read_document(
        template,
        path,
        base_dir=path.parent.resolve(),
        local_host=local_host,
        state_dir=state_dir,
        stack=Stack(region=region, account_id=account, stack_name=f"{service}-{chosen_stage}"),
        findings=findings,
    )


def _compile(document: dict[str, Any], stage: str, findings: Findings) -> dict[str, Any]:
    """The CloudFormation the Framework would deploy, the parts sockway reads."""
    provider = document.get("provider") or {}
    if provider.get("name", "aws") != "aws":
        findings.problem("provider.name", f"{provider.get('name')!r}: only aws is supported")
    for key in provider:
        if key not in _PROVIDER_KEYS_READ:
            findings.ignore(f"provider.{key}: not emulated")
    service = str(document.get("service", "service"))
    resources: dict[str, Any] = {}
    functions = document.get("functions") or {}
    if not isinstance(functions, dict):
        findings.problem("functions", "must be a mapping of function names")
        functions = {}
    routes: list[tuple[str, str, dict[str, Any]]] = []
    for name, spec in functions.items():
        if not isinstance(spec, dict):
            findings.problem(f"functions.{name}", "must be a mapping")
            continue
        resources[f"{logical_name(name)}LambdaFunction"] = _function(
            service, stage, name, spec, provider, findings
        )
        for i, event in enumerate(spec.get("events") or []):
            if not isinstance(event, dict):
                continue
            if "websocket" in event:
                ws = event["websocket"]
                ws = {"route": ws} if isinstance(ws, str) else ws
                if not isinstance(ws, dict) or not isinstance(ws.get("route"), str):
                    findings.problem(f"functions.{name}.events[{i}].websocket", "needs a route")
                    continue
                routes.append((name, ws["route"], ws))
            else:
                kinds = ", ".join(event)
                findings.ignore(f"functions.{name}.events[{i}] ({kinds}): not emulated")
    if routes:
        resources.update(_websocket_api(provider, stage, routes, functions, findings))
    extra = document.get("resources") or {}
    template: dict[str, Any] = {"Resources": resources}
    for section in ("Resources", "Outputs", "Conditions", "Mappings", "Parameters"):
        part = extra.get(section) if isinstance(extra, dict) else None
        if isinstance(part, dict):
            template.setdefault(section, {}).update(part)
    for key in document:
        if key not in (
            "service",
            "provider",
            "functions",
            "resources",
            "custom",
            "plugins",
            "frameworkVersion",
            "package",
            "useDotenv",
            "variablesResolutionMode",
            "configValidationMode",
            "org",
            "app",
            "params",
        ):
            findings.ignore(f"{key}: not read")
    if document.get("plugins"):
        findings.ignore(f"plugins ({', '.join(map(str, document['plugins']))}): not run")
    return template


def _function(
    service: str,
    stage: str,
    name: str,
    spec: dict[str, Any],
    provider: dict[str, Any],
    findings: Findings,
) -> dict[str, Any]:
    where = f"functions.{name}"
    for key in spec:
        if key in _FUNCTION_KEYS_NOT_EMULATED:
            findings.ignore(f"{where}.{key}: not emulated")
        elif key not in _FUNCTION_KEYS_READ:
            findings.problem(f"{where}.{key}", "not supported by sockway")
    # The service directory is the package (Lambda's task root): ``src/chat.say`` imports
    # ``src.chat`` from it, as on Lambda.
    handler = str(spec.get("handler", ""))
    environment = {**(provider.get("environment") or {}), **(spec.get("environment") or {})}
    props: dict[str, Any] = {
        "FunctionName": spec.get("name") or f"{service}-{stage}-{name}",
        "Handler": handler,
        "Runtime": spec.get("runtime") or provider.get("runtime") or "",
        "Code": ".",
        "Timeout": spec.get("timeout", provider.get("timeout", DEFAULT_TIMEOUT_S)),
        "MemorySize": spec.get("memorySize", provider.get("memorySize", DEFAULT_MEMORY_MB)),
    }
    if environment:
        props["Environment"] = {"Variables": environment}
    if spec.get("reservedConcurrency") is not None:
        props["ReservedConcurrentExecutions"] = spec["reservedConcurrency"]
    return {"Type": "AWS::Lambda::Function", "Properties": props}


def _websocket_api(
    provider: dict[str, Any],
    stage: str,
    routes: list[tuple[str, str, dict[str, Any]]],
    functions: dict[str, Any],
    findings: Findings,
) -> dict[str, Any]:
    api = {"Ref": "WebsocketsApi"}
    out: dict[str, Any] = {
        "WebsocketsApi": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": provider.get(
                    "websocketsApiRouteSelectionExpression", "$request.body.action"
                ),
            },
        },
        "WebsocketsDeploymentStage": {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Properties": {"ApiId": api, "StageName": stage},
        },
    }
    for function, route, ws in routes:
        fn = f"{logical_name(function)}LambdaFunction"
        integration = f"{logical_name(function)}WebsocketsIntegration"
        out[integration] = {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": api,
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": {"Fn::GetAtt": [fn, "Arn"]},
            },
        }
        route_id = f"{_route_name(route)}WebsocketsRoute"
        props: dict[str, Any] = {
            "ApiId": api,
            "RouteKey": route,
            "Target": {"Fn::Join": ["/", ["integrations", {"Ref": integration}]]},
        }
        selection = ws.get("routeResponseSelectionExpression")
        if selection is not None:
            props["RouteResponseSelectionExpression"] = selection
            out[f"{_route_name(route)}WebsocketsRouteResponse"] = {
                "Type": "AWS::ApiGatewayV2::RouteResponse",
                "Properties": {
                    "ApiId": api,
                    "RouteId": {"Ref": route_id},
                    "RouteResponseKey": "$default",
                },
            }
        authorizer = ws.get("authorizer")
        if authorizer is not None:
            where = f"functions.{function}.events.websocket.authorizer"
            if route != "$connect":
                findings.problem(where, "only the $connect route can have an authorizer")
            spec = {"name": authorizer} if isinstance(authorizer, str) else authorizer
            auth_name = spec.get("name") if isinstance(spec, dict) else None
            if not isinstance(auth_name, str) or auth_name not in functions:
                findings.problem(
                    where,
                    f"{authorizer!r}: name a function of this service (ARNs are not supported)",
                )
            else:
                auth_id = f"{logical_name(auth_name)}WebsocketsAuthorizer"
                sources = spec.get("identitySource") or ["route.request.header.Auth"]
                out[auth_id] = {
                    "Type": "AWS::ApiGatewayV2::Authorizer",
                    "Properties": {
                        "ApiId": api,
                        "AuthorizerType": "REQUEST",
                        "AuthorizerUri": {
                            "Fn::GetAtt": [f"{logical_name(auth_name)}LambdaFunction", "Arn"]
                        },
                        "IdentitySource": sources if isinstance(sources, list) else [sources],
                    },
                }
                props["AuthorizationType"] = "CUSTOM"
                props["AuthorizerId"] = {"Ref": auth_id}
        out[route_id] = {"Type": "AWS::ApiGatewayV2::Route", "Properties": props}
    return out
