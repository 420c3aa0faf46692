"""AppSync Events resources → a sockway ``type: events`` API (appsync-events spec §3.1, §6.3).

Read: ``AWS::AppSync::Api`` (``EventConfig``: ``AuthProviders`` — ``API_KEY``, ``AWS_LAMBDA``
with ``LambdaAuthorizerConfig``, ``AMAZON_COGNITO_USER_POOLS`` with ``CognitoConfig`` (tokens
checked against the pool's public JWKS), ``OPENID_CONNECT`` with ``OpenIDConnectConfig`` (the
issuer's ``/.well-known/jwks.json``), ``AWS_IAM`` (signed with the test credentials sockway gives
handlers) — and ``ConnectionAuthModes``, ``DefaultPublishAuthModes``,
``DefaultSubscribeAuthModes``), ``AWS::AppSync::ApiKey`` (a ``da2-…`` key generated at start or
pinned with ``--api-key LogicalId=KEY``; ``Expires``), ``AWS::AppSync::ChannelNamespace``
(``Name``, ``PublishAuthModes``, ``SubscribeAuthModes``, ``HandlerConfigs`` with
``Behavior: DIRECT`` and a Lambda ``DataSource``, ``LambdaConfig.InvokeType``) and
``AWS::AppSync::DataSource`` (``Type: AWS_LAMBDA``, ``LambdaConfig.LambdaFunctionArn``).
``Ref`` of the Api is its ARN; ``GetAtt`` gives ``ApiId``, ``ApiArn``, ``Dns.Http``,
``Dns.Realtime`` (sockway's host), ``ApiKey.ApiKey`` the key.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sockway.projects.intrinsics import Stack
from sockway.projects.lambda_functions import FunctionDef
from sockway.projects.problems import Findings
from sockway.projects.resources import Resource, by_type, derived_id

API = "AWS::AppSync::Api"
API_KEY = "AWS::AppSync::ApiKey"
NAMESPACE = "AWS::AppSync::ChannelNamespace"
DATA_SOURCE = "AWS::AppSync::DataSource"
TYPES = (API, API_KEY, NAMESPACE, DATA_SOURCE)
REF_TYPES = TYPES

_FUNCTION_NAME = re.compile(r":function:([A-Za-z0-9_\-]+)")
_KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
DEFAULT_HANDLER_TIMEOUT_S = 30.0

_READ = {
    API: ({"Name", "EventConfig"}, {"Tags", "OwnerContact"}),
    API_KEY: ({"ApiId", "Expires"}, {"Description", "ApiKeyId"}),
    NAMESPACE: (
        {"ApiId", "Name", "PublishAuthModes", "SubscribeAuthModes", "HandlerConfigs"},
        {"Tags"},
    ),
    DATA_SOURCE: (
        {"ApiId", "Name", "Type", "LambdaConfig"},
        {"Description", "ServiceRoleArn", "MetricsConfig"},
    ),
}


def api_id(logical_id: str) -> str:
    return derived_id(f"appsync/{logical_id}", 26)


def ref_value(kind: str, logical_id: str, stack: Stack) -> str:
    arn = f"arn:aws:appsync:{stack.region}:{stack.account_id}:apis/"
    if kind == API:
        return arn + api_id(logical_id)
    return arn + f"{kind.rsplit('::', 1)[1].lower()}/{logical_id}"


@dataclass
class ApiKeyDef:
    logical_id: str
    key: str
    pinned: bool


def new_api_key() -> str:
    """A key shaped like AppSync's: ``da2-`` and 26 lowercase letters and digits."""
    return "da2-" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(26))


def attribute(
    kind: str, logical_id: str, name: str, stack: Stack, keys: dict[str, ApiKeyDef] | None = None
) -> Any:
    region = stack.region
    if kind == API:
        ident = api_id(logical_id)
        values = {
            "ApiId": ident,
            "ApiArn": ref_value(kind, logical_id, stack),
            "Dns.Http": f"{ident}.appsync-api.{region}.amazonaws.com",
            "Dns.Realtime": f"{ident}.appsync-realtime-api.{region}.amazonaws.com",
        }
        return values[name]
    if kind == API_KEY and name == "ApiKey" and keys is not None:
        return keys[logical_id].key
    if kind == API_KEY and name in ("ApiKeyId", "Arn"):
        return ref_value(kind, logical_id, stack)
    if kind == DATA_SOURCE and name == "Name":
        raise KeyError(name)  # the reader answers from the resource's own Name
    if name in ("Arn", "DataSourceArn", "ChannelNamespaceArn"):
        return ref_value(kind, logical_id, stack)
    raise KeyError(name)


@dataclass
class EventsReader:
    resources: dict[str, Resource]
    refs: dict[str, Any]
    functions: dict[str, FunctionDef]
    stack: Stack
    findings: Findings
    keys: dict[str, ApiKeyDef]
    refused: set[str]  # names of the template's functions already refused (said once)
    api_keys: list[ApiKeyDef] = field(default_factory=list)

    def apis(self) -> list[dict[str, Any]]:
        for resource in by_type(self.resources, *TYPES):
            read, skip = _READ[resource.type]
            ignored = sorted(k for k in resource.properties if k in skip)
            if ignored:
                self.findings.ignore(
                    f"{resource.logical_id} ({resource.type}): {', '.join(ignored)} not emulated"
                )
            for key in resource.properties:
                if key not in read and key not in skip:
                    self.findings.problem(
                        resource.where(key), f"not supported by sockway ({resource.type})"
                    )
        apis = by_type(self.resources, API)
        if len(apis) > 1:
            self.findings.problem(
                f"{apis[1].logical_id}.Type",
                "sockway serves one AppSync Events API per template (they share /event)",
            )
        return [api for api in (self._api(r) for r in apis[:1]) if api is not None]

    def _of_api(self, api: Resource, kind: str) -> list[Resource]:
        ident = api_id(api.logical_id)
        owners = (ident, self.refs[api.logical_id])
        return [r for r in by_type(self.resources, kind) if r.properties.get("ApiId") in owners]

    def _api(self, api: Resource) -> dict[str, Any] | None:
        event_config = api.properties.get("EventConfig")
        if not isinstance(event_config, dict):
            self.findings.problem(
                api.where("EventConfig"), "required: only AppSync Events APIs are supported"
            )
            return None
        if "LogConfig" in event_config:
            self.findings.ignore(f"{api.logical_id} ({API}): EventConfig.LogConfig not emulated")
        providers = self._providers(api, event_config.get("AuthProviders"))
        config: dict[str, Any] = {
            "name": api.logical_id,
            "type": "events",
            "api_id": api_id(api.logical_id),
            "region": self.stack.region,
            "account_id": self.stack.account_id,
            "runtime": "process",
            "auth_providers": providers,
        }
        for key, ours in (
            ("ConnectionAuthModes", "connection_auth_modes"),
            ("DefaultPublishAuthModes", "default_publish_auth_modes"),
            ("DefaultSubscribeAuthModes", "default_subscribe_auth_modes"),
        ):
            if key in event_config:
                config[ours] = _modes(event_config[key])
        namespaces: dict[str, Any] = {}
        for namespace in self._of_api(api, NAMESPACE):
            name = namespace.properties.get("Name")
            if not isinstance(name, str):
                self.findings.problem(namespace.where("Name"), "required")
                continue
            namespaces[name] = self._namespace(api, namespace)
        if not namespaces:
            self.findings.problem(
                f"{api.logical_id}", "an AppSync Events API needs an AWS::AppSync::ChannelNamespace"
            )
        config["namespaces"] = namespaces
        return config

    def _providers(self, api: Resource, providers: Any) -> list[dict[str, Any]]:
        where = api.where("EventConfig", "AuthProviders")
        out: list[dict[str, Any]] = []
        if not isinstance(providers, list) or not providers:
            self.findings.problem(where, "required (a list of {AuthType})")
            return out
        for i, provider in enumerate(providers):
            kind = provider.get("AuthType") if isinstance(provider, dict) else None
            loc = f"{where}[{i}]"
            if kind == "API_KEY":
                keys = []
                for key in self._of_api(api, API_KEY):
                    entry: dict[str, Any] = {
                        "key": self.keys[key.logical_id].key,
                        "description": key.logical_id,
                    }
                    if key.properties.get("Expires") is not None:
                        entry["expires"] = int(key.properties["Expires"])
                    keys.append(entry)
                    self.api_keys.append(self.keys[key.logical_id])
                if not keys:
                    self.findings.problem(loc, "API_KEY auth needs an AWS::AppSync::ApiKey")
                    continue
                out.append({"type": "API_KEY", "keys": keys})
            elif kind == "AWS_LAMBDA":
                lambda_config = provider.get("LambdaAuthorizerConfig") or {}
                function = self._function(
                    lambda_config.get("AuthorizerUri"),
                    f"{loc}.LambdaAuthorizerConfig.AuthorizerUri",
                )
                if function is None:
                    continue
                spec = {"type": "AWS_LAMBDA", **function.settings(DEFAULT_HANDLER_TIMEOUT_S)}
                if "AuthorizerResultTtlInSeconds" in lambda_config:
                    spec["result_ttl_s"] = int(lambda_config["AuthorizerResultTtlInSeconds"])
                if lambda_config.get("IdentityValidationExpression"):
                    spec["identity_validation_expression"] = lambda_config[
                        "IdentityValidationExpression"
                    ]
                out.append(spec)
            elif kind == "AMAZON_COGNITO_USER_POOLS":
                cognito = provider.get("CognitoConfig") or {}
                region = cognito.get("AwsRegion", self.stack.region)
                pool = cognito.get("UserPoolId")
                issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
                spec = {
                    "type": kind,
                    "user_pool_id": pool,
                    "aws_region": region,
                    "jwks_url": f"{issuer}/.well-known/jwks.json",
                }
                if cognito.get("AppIdClientRegex"):
                    spec["app_id_client_regex"] = cognito["AppIdClientRegex"]
                out.append(spec)
            elif kind == "OPENID_CONNECT":
                oidc = provider.get("OpenIDConnectConfig") or {}
                issuer = str(oidc.get("Issuer", "")).rstrip("/")
                spec = {
                    "type": kind,
                    "issuer": issuer,
                    "jwks_url": f"{issuer}/.well-known/jwks.json",
                }
                if oidc.get("ClientId"):
                    spec["client_id"] = oidc["ClientId"]
                for name, ours in (("IatTTL", "iat_ttl_ms"), ("AuthTTL", "auth_ttl_ms")):
                    if oidc.get(name) is not None:
                        spec[ours] = int(oidc[name])
                out.append(spec)
            elif kind == "AWS_IAM":
                from sockway.projects.dynamodb import TEST_CREDENTIAL

                self.findings.warn(
                    f"{api.logical_id}: AWS_IAM requests are checked against the test "
                    f"credentials ({TEST_CREDENTIAL}/{TEST_CREDENTIAL}) handlers get"
                )
                out.append(
                    {
                        "type": kind,
                        "credentials": [
                            {"access_key_id": TEST_CREDENTIAL, "secret_access_key": TEST_CREDENTIAL}
                        ],
                    }
                )
            else:
                self.findings.problem(f"{loc}.AuthType", f"{kind!r} is not an AppSync auth type")
        return out

    def _function(self, uri: Any, where: str) -> FunctionDef | None:
        match = _FUNCTION_NAME.search(uri) if isinstance(uri, str) else None
        function = self.functions.get(match.group(1)) if match else None
        if function is None and not (match and match.group(1) in self.refused):
            self.findings.problem(where, f"{uri!r} is not a (served) function of this template")
        return function

    def _namespace(self, api: Resource, namespace: Resource) -> dict[str, Any]:
        props = namespace.properties
        out: dict[str, Any] = {}
        for key, ours in (
            ("PublishAuthModes", "publish_auth_modes"),
            ("SubscribeAuthModes", "subscribe_auth_modes"),
        ):
            if key in props:
                out[ours] = _modes(props[key])
        configs = props.get("HandlerConfigs") or {}
        for key, ours in (("OnPublish", "on_publish"), ("OnSubscribe", "on_subscribe")):
            handler = configs.get(key)
            if handler is None:
                continue
            loc = namespace.where("HandlerConfigs", key)
            if handler.get("Behavior") != "DIRECT":
                self.findings.problem(
                    f"{loc}.Behavior",
                    f"{handler.get('Behavior')!r}: only DIRECT (a Lambda data source) is "
                    "supported; APPSYNC_JS code handlers are not",
                )
                continue
            integration = handler.get("Integration") or {}
            source = self._data_source(api, integration.get("DataSourceName"), f"{loc}.Integration")
            if source is None:
                continue
            spec = source.settings(DEFAULT_HANDLER_TIMEOUT_S)
            invoke_type = (integration.get("LambdaConfig") or {}).get("InvokeType")
            if invoke_type is not None:
                spec["invoke_type"] = invoke_type
            out[ours] = spec
        return out

    def _data_source(self, api: Resource, name: Any, where: str) -> FunctionDef | None:
        for source in self._of_api(api, DATA_SOURCE):
            if source.properties.get("Name") != name:
                continue
            if source.properties.get("Type") != "AWS_LAMBDA":
                kind = source.properties.get("Type")
                self.findings.problem(
                    source.where("Type"), f"{kind!r}: only AWS_LAMBDA data sources are supported"
                )
                return None
            arn = (source.properties.get("LambdaConfig") or {}).get("LambdaFunctionArn")
            return self._function(arn, source.where("LambdaConfig", "LambdaFunctionArn"))
        self.findings.problem(
            f"{where}.DataSourceName", f"{name!r}: no such data source of the API"
        )
        return None


def _modes(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(m.get("AuthType")) for m in value if isinstance(m, dict)]
