"""Settings of ``type: events`` APIs, AppSync Events-compatible (spec §3.1, §5, §6.1).

Key names follow AppSync's ``EventConfig`` / ``ChannelNamespace`` in snake_case. Limits default
to AppSync's quotas (spec §5); each can be overridden for local testing.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from sockway.frontdoor.settings import ApiBase, Credential, Strict, derived_api_id
from sockway.runtimes.settings import (
    FunctionSettings,
    handler_code_dir,
    handler_runtime,
    refuse_inprocess_problems,
)

AuthType = Literal[
    "API_KEY", "AWS_LAMBDA", "OPENID_CONNECT", "AMAZON_COGNITO_USER_POOLS", "AWS_IAM"
]
_NAMESPACE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,48}[A-Za-z0-9])?$")


class ApiKey(Strict):
    """One API key (spec §3.2). ``expires``: ISO date-time or epoch seconds; omitted = never."""

    key: str = Field(min_length=1, repr=False)
    expires: dt.datetime | None = None
    description: str = ""

    def valid_at(self, now: dt.datetime) -> bool:
        return self.expires is None or now < self.expires


class ApiKeyProvider(Strict):
    type: Literal["API_KEY"]
    keys: list[ApiKey] = Field(min_length=1)

    @field_validator("keys", mode="before")
    @classmethod
    def _short_keys(cls, value: Any) -> Any:
        """``keys: [da2-...]`` is short for ``keys: [{key: da2-...}]``."""
        if isinstance(value, list):
            return [{"key": v} if isinstance(v, str) else v for v in value]
        return value


class LambdaAuthProvider(FunctionSettings):
    """AWS_LAMBDA authorizer (spec §3.5): a handler answering ``{isAuthorized, handlerContext}``."""

    type: Literal["AWS_LAMBDA"]
    handler: str
    result_ttl_s: int = Field(0, ge=0, le=3600, description="authorizerResultTtlInSeconds")
    identity_validation_expression: str | None = None

    @field_validator("identity_validation_expression")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class _JwtProvider(Strict):
    jwks_file: Path | None = None
    jwks_url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Any:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of jwks_file and jwks_url")
        return self


class OidcProvider(_JwtProvider):
    """OPENID_CONNECT (spec §3.3): ``iss`` must equal ``issuer``; ``client_id`` is a regex."""

    type: Literal["OPENID_CONNECT"]
    issuer: str
    client_id: str | None = None
    iat_ttl_ms: int = Field(0, ge=0, description="0: no limit on token age since iat")
    auth_ttl_ms: int = Field(0, ge=0, description="0: no limit on time since auth_time")


class CognitoProvider(_JwtProvider):
    """AMAZON_COGNITO_USER_POOLS (spec §3.3); ``issuer`` overrides the Cognito URL (local IdP)."""

    type: Literal["AMAZON_COGNITO_USER_POOLS"]
    user_pool_id: str
    aws_region: str = "us-east-1"
    app_id_client_regex: str | None = None
    issuer: str | None = None

    @property
    def expected_issuer(self) -> str:
        return self.issuer or (
            f"https://cognito-idp.{self.aws_region}.amazonaws.com/{self.user_pool_id}"
        )


class IamProvider(Strict):
    """AWS_IAM (spec §3.4): SigV4 checked against these credentials."""

    type: Literal["AWS_IAM"]
    credentials: list[Credential] = Field(min_length=1)


AuthProvider = Annotated[
    ApiKeyProvider | LambdaAuthProvider | OidcProvider | CognitoProvider | IamProvider,
    Field(discriminator="type"),
]


class HandlerSpec(FunctionSettings):
    """An onPublish / onSubscribe handler (spec §6.3, direct Lambda integration); any handler
    form (``module.function``, ``http(s)://…``, ``arn:aws:lambda:…`` / ``lambda:NAME``)."""

    handler: str
    invoke_type: Literal["REQUEST_RESPONSE", "EVENT"] = "REQUEST_RESPONSE"


def _short_handler(value: Any) -> Any:
    return {"handler": value} if isinstance(value, str) else value


class Namespace(Strict):
    on_publish: HandlerSpec | None = None
    on_subscribe: HandlerSpec | None = None
    code: str | None = Field(
        None,
        min_length=1,
        description="APPSYNC_JS code handlers (spec §6.2): a JS file under code_dir exporting "
        "onPublish(ctx) and/or onSubscribe(ctx), run in Node.js workers (runtime: nodejs)",
    )
    publish_auth_modes: list[AuthType] | None = None
    subscribe_auth_modes: list[AuthType] | None = None

    @field_validator("on_publish", "on_subscribe", mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        return _short_handler(value)

    @model_validator(mode="after")
    def _code_or_handlers(self) -> Namespace:
        if self.code is not None and (self.on_publish or self.on_subscribe):
            raise ValueError(
                "give either 'code' (APPSYNC_JS handlers) or on_publish / on_subscribe "
                "(direct Lambda handlers), not both"
            )
        return self


class EventsLimits(Strict):
    """Bounds of an events API; defaults are AppSync's (spec §5)."""

    max_event_bytes: int = Field(240 * 1024, gt=0, description="AppSync: 240 KB per event")
    max_events_per_publish: int = Field(5, gt=0, description="AppSync: 5 events per publish")
    max_subscriptions_per_connection: int = Field(200, gt=0, description="AppSync: 200")
    max_connection_duration_s: float = Field(86400, gt=0, description="AppSync: 24 h")
    max_publishes_per_second: int = Field(
        25, gt=0, description="AppSync: 25 WebSocket publish requests per second per connection"
    )
    connection_timeout_ms: int = Field(
        300_000, gt=0, description="sent in connection_ack; clients drop after it without ka"
    )
    keep_alive_interval_s: float = Field(60, gt=0, description="AppSync: a ka every 60 s")
    max_request_bytes: int = Field(
        1_258_291, gt=0, description="AppSync: 1.2 MB per publish request or WebSocket message"
    )
    handler_timeout_s: float = Field(30, gt=0, le=900, description="AppSync: 30 s per handler")
    outbox_max_bytes: int = Field(
        1024 * 1024, gt=0, description="unsent bytes per connection before a slow-consumer close"
    )
    max_inflight_messages: int = Field(
        64, gt=0, description="messages of one connection handled at once (then back-pressure)"
    )


class EventsApi(ApiBase):
    """An AppSync Events-compatible API (``type: events``)."""

    type: Literal["events"]
    base_path: str = Field("", pattern=r"^(/[A-Za-z0-9_\-]+)*$")
    auth_providers: list[AuthProvider] = Field(min_length=1)
    connection_auth_modes: list[AuthType] | None = None
    default_publish_auth_modes: list[AuthType] | None = None
    default_subscribe_auth_modes: list[AuthType] | None = None
    namespaces: dict[str, Namespace] = Field(min_length=1)
    limits: EventsLimits = Field(default_factory=lambda: EventsLimits())
    api_id: str | None = Field(None, pattern=r"^[a-z0-9]{26}$")
    domain_name: str | None = None

    @field_validator("namespaces", mode="before")
    @classmethod
    def _empty_namespaces(cls, value: Any) -> Any:
        """``default:`` with nothing under it is a namespace with no handlers."""
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("namespaces")
    @classmethod
    def _names(cls, value: dict[str, Namespace]) -> dict[str, Namespace]:
        for name in value:
            if not _NAMESPACE.match(name):
                raise ValueError(
                    f"namespace '{name}': 1-50 letters, digits or '-', not starting or ending "
                    "with '-'"
                )
        return value

    @model_validator(mode="after")
    def _code_files(self) -> EventsApi:
        base = self.code_dir or Path.cwd()
        for name, ns in self.namespaces.items():
            if ns.code is not None and not (base / ns.code).is_file():
                raise ValueError(f"namespaces.{name}.code: file '{ns.code}' not found in {base}")
        return self

    @model_validator(mode="after")
    def _modes_configured(self) -> EventsApi:
        types = [p.type for p in self.auth_providers]
        if len(set(types)) != len(types):
            raise ValueError("auth_providers: each type may appear once")
        lists: list[tuple[str, list[AuthType] | None]] = [
            ("connection_auth_modes", self.connection_auth_modes),
            ("default_publish_auth_modes", self.default_publish_auth_modes),
            ("default_subscribe_auth_modes", self.default_subscribe_auth_modes),
        ]
        for name, ns in self.namespaces.items():
            lists.append((f"namespaces.{name}.publish_auth_modes", ns.publish_auth_modes))
            lists.append((f"namespaces.{name}.subscribe_auth_modes", ns.subscribe_auth_modes))
        for where, modes in lists:
            for mode in modes or ():
                if mode not in types:
                    raise ValueError(f"{where}: {mode} is not listed in auth_providers")
        return self

    @model_validator(mode="after")
    def _runtimes_keep_settings(self) -> EventsApi:
        functions: list[tuple[str, FunctionSettings]] = [
            (f"auth_providers[{j}]", p)
            for j, p in enumerate(self.auth_providers)
            if isinstance(p, LambdaAuthProvider)
        ]
        for name, ns in self.namespaces.items():
            for slot in ("on_publish", "on_subscribe"):
                spec = getattr(ns, slot)
                if spec is not None:
                    functions.append((f"namespaces.{name}.{slot}", spec))
        refuse_inprocess_problems(functions, self.runtime)
        return self

    @property
    def provider_types(self) -> list[AuthType]:
        return [p.type for p in self.auth_providers]

    def connect_modes(self) -> list[AuthType]:
        return self.connection_auth_modes or self.provider_types

    def publish_modes(self, namespace: str) -> list[AuthType]:
        ns = self.namespaces[namespace]
        return ns.publish_auth_modes or self.default_publish_auth_modes or self.provider_types

    def subscribe_modes(self, namespace: str) -> list[AuthType]:
        ns = self.namespaces[namespace]
        return ns.subscribe_auth_modes or self.default_subscribe_auth_modes or self.provider_types

    @property
    def effective_api_id(self) -> str:
        """Configured ``api_id``, else 26 characters derived from the name (AppSync's length)."""
        return self.api_id if self.api_id is not None else derived_api_id(self.name, 26)


# The auth provider ``type`` tags (pydantic puts them into error locations; not config keys).
EVENTS_AUTH_TYPES: tuple[str, ...] = get_args(AuthType)


def handler_refs(i: int, api: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(key path, reference, runtime, code_dir) of a raw API's Lambda authorizer and every namespace
    handler (for ``gateway.config``, which resolves them before serving)."""
    refs: list[tuple[str, str, str, str | None]] = []
    providers = api.get("auth_providers")
    if isinstance(providers, list):
        for j, provider in enumerate(providers):
            if isinstance(provider, dict) and provider.get("type") == "AWS_LAMBDA":
                handler = provider.get("handler")
                if isinstance(handler, str):
                    loc = f"apis[{i}].auth_providers[{j}].handler"
                    runtime = handler_runtime(api, provider)
                    refs.append((loc, handler, runtime, handler_code_dir(api, provider)))
    namespaces = api.get("namespaces")
    if isinstance(namespaces, dict):
        for name, ns in namespaces.items():
            if not isinstance(ns, dict):
                continue
            for slot in ("on_publish", "on_subscribe"):
                spec = ns.get(slot)
                handler = spec.get("handler") if isinstance(spec, dict) else spec
                if isinstance(handler, str):
                    loc = f"apis[{i}].namespaces.{name}.{slot}"
                    runtime = handler_runtime(api, spec)
                    refs.append((loc, handler, runtime, handler_code_dir(api, spec)))
    return refs
