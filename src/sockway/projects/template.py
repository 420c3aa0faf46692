"""A SAM / CloudFormation template (or a CDK ``cdk.out``) → sockway's configuration document.

``read_template`` loads the template (JSON or YAML with short forms), takes the parameters'
defaults and ``--parameter`` overrides, evaluates ``Conditions``, resolves every resource's
properties (``projects.intrinsics``), and translates what sockway serves: WebSocket APIs
(``projects.apigw``), their functions (``projects.lambda_functions``), AppSync Events APIs
(``projects.appsync``) and DynamoDB tables (``projects.dynamodb``). The result is a plain
configuration document, validated by ``gateway.config.parse_config`` like a YAML file.

Values that name the API itself — ``!GetAtt Api.ApiEndpoint``,
``https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}``, the Events API's
``Dns.Http`` / ``Dns.Realtime`` — name where sockway serves it (``local_host``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sockway.projects import apigw, appsync, dynamodb
from sockway.projects.cfn_yaml import TemplateReadError, load_template
from sockway.projects.intrinsics import IntrinsicError, Resolver, Stack
from sockway.projects.lambda_functions import (
    FUNCTION_TYPES,
    LAYER_TYPES,
    SERVERLESS_FUNCTION,
    FunctionDef,
    FunctionReader,
    cdk_assets,
    merge_globals,
)
from sockway.projects.names import StackNames
from sockway.projects.parameters import samconfig_parameters, template_parameters
from sockway.projects.problems import Findings, ProjectError
from sockway.projects.project import Project, find_template, localise_hosts
from sockway.projects.resources import Resource
from sockway.runtimes.aws_hosts import certificate_names

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
# Resource types with no local effect on what the APIs do: listed once as not emulated.
_NOT_EMULATED_PREFIXES = (
    "AWS::IAM::",
    "AWS::Logs::",
    "AWS::CloudWatch::",
    "AWS::WAFv2::",
    "AWS::WAF::",
    "AWS::KMS::",
    "AWS::CDK::",
    "AWS::SSM::",
    "AWS::Lambda::Permission",
    "AWS::Lambda::Version",
    "AWS::Lambda::Alias",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Lambda::Url",
    "AWS::ApiGatewayV2::ApiMapping",
    "AWS::ApiGatewayV2::DomainName",
    "AWS::ApiGatewayV2::Model",
    "AWS::ApiGatewayV2::IntegrationResponse",
    "AWS::CertificateManager::",
    "AWS::Route53::",
    "AWS::SNS::",
    "AWS::SQS::",
    "AWS::S3::",
    "AWS::Events::",
    "AWS::Scheduler::",
    "AWS::XRay::",
    "AWS::Cognito::",
    "AWS::SecretsManager::",
    "AWS::EC2::",
    "AWS::Serverless::Application",
    "AWS::Serverless::Api",
    "AWS::Serverless::HttpApi",
    "AWS::ApiGateway::",
)
# Of the API-shaped families, a type sockway does not read changes what clients see: refused.
_REFUSED_PREFIXES = ("AWS::ApiGatewayV2::", "AWS::AppSync::")


# The resource types sockway reads; every other type is listed (or refused), not resolved.
SERVED_TYPES = frozenset(
    {*apigw.TYPES, *appsync.TYPES, *dynamodb.TYPES, *FUNCTION_TYPES, *LAYER_TYPES}
)


def read_template(
    path: Path,
    *,
    parameters: dict[str, str] | None = None,
    local_host: str,
    state_dir: Path,
    region: str = "us-east-1",
    account_id: str = "123456789012",
    stack_name: str = "sockway-local",
    tls: bool = True,
    api_keys: dict[str, str] | None = None,
) -> Project:
    """Translate the template at ``path`` (see the module docstring); raise ``ProjectError``
    listing every problem, each with its logical id and property path."""
    template_path = find_template(path)
    try:
        document = load_template(template_path)
    except TemplateReadError as exc:
        raise ProjectError([str(exc)]) from None
    parameters = {**samconfig_parameters(template_path.parent), **(parameters or {})}
    return read_document(
        document,
        template_path,
        base_dir=template_path.parent.resolve(),
        parameters=parameters,
        local_host=local_host,
        state_dir=state_dir,
        stack=Stack(region=region, account_id=account_id, stack_name=stack_name),
        tls=tls,
        api_keys=api_keys,
    )


def read_document(
    document: dict[str, Any],
    source: Path,
    *,
    base_dir: Path,
    local_host: str,
    state_dir: Path,
    stack: Stack,
    parameters: dict[str, str] | None = None,
    tls: bool = True,
    api_keys: dict[str, str] | None = None,
    findings: Findings | None = None,
) -> Project:
    """``read_template`` on a parsed template (``projects.serverless`` compiles into one);
    ``findings`` may already hold the caller's problems and notes."""
    reader = _Reader(
        document,
        base_dir=base_dir,
        state_dir=state_dir,
        stack=stack,
        overrides=parameters or {},
        local_host=local_host,
        tls=tls,
        api_keys=api_keys or {},
        findings=findings or Findings(),
    )
    project = reader.read(source)
    if reader.findings.problems:
        raise ProjectError(reader.findings.problems)
    return project


class _Reader:
    def __init__(
        self,
        document: dict[str, Any],
        *,
        base_dir: Path,
        state_dir: Path,
        stack: Stack,
        overrides: dict[str, str],
        local_host: str,
        tls: bool,
        api_keys: dict[str, str],
        findings: Findings,
    ) -> None:
        self.document = document
        self.base_dir = base_dir
        self.state_dir = state_dir
        self.stack = stack
        self.overrides = overrides
        self.local_host = local_host
        self.tls = tls
        self.findings = findings
        raw = document.get("Resources")
        self.raw: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.keys = self._api_keys(api_keys)
        self.names = StackNames(self.raw, stack, self.keys, SERVED_TYPES, lambda: self.resolver)
        self.resolver = Resolver(
            stack=stack,
            parameters=template_parameters(document, overrides, findings),
            ref=self.names.ref,
            get_att=self.names.get_att,
            mappings=document.get("Mappings") or {},
            conditions=document.get("Conditions") or {},
        )

    def _api_keys(self, pinned: dict[str, str]) -> dict[str, appsync.ApiKeyDef]:
        keys: dict[str, appsync.ApiKeyDef] = {}
        for logical_id, body in self.raw.items():
            if isinstance(body, dict) and body.get("Type") == appsync.API_KEY:
                key = pinned.get(logical_id)
                keys[logical_id] = appsync.ApiKeyDef(
                    logical_id, key or appsync.new_api_key(), key is not None
                )
        for logical_id in pinned:
            if logical_id not in keys:
                self.findings.problem(
                    f"--api-key {logical_id}", "the template declares no such AWS::AppSync::ApiKey"
                )
        return keys

    # -- the document --------------------------------------------------------------------------

    def read(self, source: Path) -> Project:
        self._check_transform()
        if not self.raw:
            self.findings.problem("Resources", "the template declares no resources")
        resources = self._resources()
        functions = self._functions(resources)
        by_name = {f.name: f for f in functions.values()}
        refs = {lid: self.names.safe_ref(lid) for lid in resources}
        refused = {
            str(refs[r.logical_id])
            for r in resources.values()
            if r.type in FUNCTION_TYPES and r.logical_id not in functions
        }
        apis = apigw.WebSocketReader(
            resources,
            refs,
            by_name,
            self.stack.region,
            self.stack.account_id,
            self.findings,
            refused,
        ).apis()
        events = appsync.EventsReader(
            resources, refs, by_name, self.stack, self.findings, self.keys, refused
        )
        apis += events.apis()
        tables = dynamodb.tables(resources, refs, self.findings)
        for resource in resources.values():
            if resource.type in SERVED_TYPES:
                continue
            if resource.type.startswith(_NOT_EMULATED_PREFIXES):
                self.findings.ignore(f"{resource.logical_id} ({resource.type})")
            elif resource.type.startswith(_REFUSED_PREFIXES):
                self.findings.problem(
                    f"{resource.logical_id}.Type", f"{resource.type} is not supported by sockway"
                )
            else:
                self.findings.ignore(f"{resource.logical_id} ({resource.type}): not emulated")
        if not apis and not self.findings.problems:
            self.findings.problem(
                "Resources",
                "no WebSocket API (AWS::ApiGatewayV2::Api, ProtocolType WEBSOCKET) nor AppSync "
                "Events API (AWS::AppSync::Api) to serve",
            )
        config: dict[str, Any] = {"apis": apis}
        if self.tls:  # handlers call https://… of their APIs, as on AWS
            names = certificate_names(self.stack.region)
            config["tls"] = {"certificate": "auto", "names": names}
        # Every function also answers by name on the Lambda Invoke API (gateway.lambda_api).
        config["functions"] = {
            f.name: {
                **f.settings(),
                "region": self.stack.region,
                "account_id": self.stack.account_id,
            }
            for f in functions.values()
        }
        config = self._localise(config)
        return Project(
            source=source,
            config=config,
            tables=tables,
            api_keys=events.api_keys,
            functions={f.logical_id: f for f in functions.values()},
            ignored=self.findings.ignored,
            warnings=self.findings.warnings,
            outputs=self._outputs(),
        )

    def _check_transform(self) -> None:
        transform = self.document.get("Transform")
        names = transform if isinstance(transform, list) else [transform] if transform else []
        for name in names:
            if name != SAM_TRANSFORM:
                self.findings.problem(
                    "Transform", f"{name!r}: only {SAM_TRANSFORM} (SAM) is supported"
                )

    # -- resources -----------------------------------------------------------------------------

    def _included(self, logical_id: str, body: dict[str, Any]) -> bool:
        condition = body.get("Condition")
        if condition is None:
            return True
        try:
            return self.resolver.condition(str(condition), f"{logical_id}.Condition")
        except IntrinsicError as exc:
            self.findings.problem(exc.path, exc.message)
            return False

    def _resources(self) -> dict[str, Resource]:
        all_globals = self.document.get("Globals") or {}
        for section in all_globals if isinstance(all_globals, dict) else {}:
            if section != "Function":
                self.findings.ignore(f"Globals.{section}: not emulated")
        globals_ = (all_globals if isinstance(all_globals, dict) else {}).get("Function") or {}
        out: dict[str, Resource] = {}
        for logical_id, body in self.raw.items():
            if not isinstance(body, dict) or not isinstance(body.get("Type"), str):
                self.findings.problem(f"Resources.{logical_id}", "needs a Type")
                continue
            if not self._included(logical_id, body):
                continue
            props = body.get("Properties") or {}
            if body["Type"] == SERVERLESS_FUNCTION and isinstance(globals_, dict):
                props = merge_globals(props, globals_)
            resolved = props
            if body["Type"] in SERVED_TYPES:  # the others are only listed: left as written
                try:
                    resolved = self.resolver.resolve(props, f"{logical_id}.Properties")
                except IntrinsicError as exc:
                    self.findings.problem(exc.path, exc.message)
                    resolved = {}
            metadata = body.get("Metadata")
            out[logical_id] = Resource(
                logical_id, body["Type"], resolved, metadata if isinstance(metadata, dict) else {}
            )
        return out

    def _functions(self, resources: dict[str, Resource]) -> dict[str, FunctionDef]:
        layers = {
            lid: {"Properties": r.properties, "Metadata": r.metadata}
            for lid, r in resources.items()
            if r.type in LAYER_TYPES
        }
        reader = FunctionReader(
            base_dir=self.base_dir,
            inline_dir=self.state_dir / "inline-functions",
            findings=self.findings,
            layers=layers,
            layer_refs={self.names.safe_ref(lid): lid for lid in layers},
            assets=cdk_assets(self.base_dir),
        )
        out: dict[str, FunctionDef] = {}
        for resource in resources.values():
            if resource.type not in FUNCTION_TYPES:
                continue
            function = reader.read(
                resource.logical_id,
                resource.type,
                resource.properties,
                resource.metadata,
                str(self.names.safe_ref(resource.logical_id)),
            )
            if function is not None:
                out[resource.logical_id] = function
        return out

    # -- where the APIs are served ---------------------------------------------------------------

    def _localise(self, value: Any) -> Any:
        """Rewrite AWS host names of this stack's APIs to where sockway serves them."""
        if isinstance(value, dict):
            return {k: self._localise(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._localise(v) for v in value]
        if isinstance(value, str):
            return localise_hosts(value, self.stack.region, self.local_host)
        return value

    def _outputs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        outputs = self.document.get("Outputs") or {}
        for name, spec in outputs.items():
            if not isinstance(spec, dict) or "Value" not in spec:
                continue
            if not self._included(name, spec):
                continue
            try:
                value = self.resolver.resolve(spec["Value"], f"Outputs.{name}.Value")
            except IntrinsicError as exc:
                self.findings.warn(f"output {name} not shown: {exc.message}")
                continue
            out[name] = str(self._localise(value))
        return out
