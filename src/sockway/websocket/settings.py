"""Settings of ``type: websocket`` APIs (README "Configuration reference"; apigw spec §5, §6).

Every bound is declared once here with its default and the reason for it (DESIGN habit 4);
defaults are API Gateway's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from sockway.frontdoor.settings import ApiBase, Credential, Strict, derived_api_id
from sockway.runtimes.refs import HandlerForm, handler_form
from sockway.runtimes.request_parameters import connect_only, parse_mapping
from sockway.runtimes.settings import (
    FunctionSettings,
    HttpProxySettings,
    InvocationType,
    handler_code_dir,
    handler_runtime,
    refuse_inprocess_problems,
)
from sockway.websocket.authorizer import IdentitySourceError, check_identity_source
from sockway.websocket.routing import ExpressionError, SelectionExpression

_STAGE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_API_ID = re.compile(r"^[a-z0-9]{10}$")
_RESERVED_ROUTES = frozenset({"$connect", "$disconnect", "$default"})


def _check_route_key(key: str) -> str:
    if not key:
        raise ValueError("route key must not be empty")
    if key.startswith("$") and key not in _RESERVED_ROUTES:
        raise ValueError(
            f"route key '{key}': only $connect, $disconnect and $default may start with '$'"
        )
    return key


RouteKey = Annotated[str, AfterValidator(_check_route_key)]


class RouteSpec(FunctionSettings):
    """A route's integration. The short form ``route: module.function`` means ``{handler: ...}``."""

    handler: str = Field(description="module.function, resolved from the API's code_dir")
    route_response: bool = Field(
        False, description="two-way route: the result's body is sent back to the client"
    )
    timeout_s: float | None = Field(
        None, gt=0, le=900, description="overrides limits.integration_timeout_s for this route"
    )
    invocation_type: InvocationType | None = Field(
        None, description="Lambda handlers only: overrides lambda.invocation_type for this route"
    )
    http_proxy: HttpProxySettings | None = Field(
        None,
        description="http(s) handlers only: API Gateway's HTTP_PROXY integration (the message "
        "as-is, not the proxy event; README 'HTTP_PROXY integrations')",
    )

    @model_validator(mode="after")
    def _http_proxy_keys(self) -> RouteSpec:
        if self.http_proxy is None:
            return self
        if handler_form(self.handler) is not HandlerForm.HTTP:
            raise ValueError("http_proxy needs an http:// or https:// handler URL")
        functional = ("runtime", "code_dir", "environment", "memory_mb", "reserved_concurrency")
        present = [key for key in functional if getattr(self, key) is not None]
        if present:
            raise ValueError(
                f"{', '.join(present)}: not used by an http_proxy route (the endpoint is an "
                "HTTP service, not a function sockway runs)"
            )
        return self

    @model_validator(mode="after")
    def _lambda_only(self) -> RouteSpec:
        if (
            self.invocation_type is not None
            and handler_form(self.handler) is not HandlerForm.LAMBDA
        ):
            raise ValueError(
                "invocation_type applies only to Lambda handlers (arn:aws:lambda:… or lambda:NAME)"
            )
        return self


class AuthorizerSpec(FunctionSettings):
    """REQUEST Lambda authorizer run on $connect (apigw spec §5)."""

    handler: str
    identity_source: list[str] = Field(default_factory=lambda: ["route.request.header.Auth"])

    @field_validator("identity_source")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for source in value:
            try:
                check_identity_source(source)
            except IdentitySourceError as exc:
                raise ValueError(str(exc)) from exc
        return value


class Limits(Strict):
    """Per-API bounds; defaults are API Gateway's (apigw spec §6)."""

    max_frame_bytes: int = Field(
        32 * 1024, gt=0, description="AWS: 32 KB per frame; a larger frame closes with 1009"
    )
    max_message_bytes: int = Field(
        128 * 1024, gt=0, description="AWS: 128 KB per message; larger closes with 1009"
    )
    idle_timeout_s: float = Field(
        600, gt=0, description="AWS: 10 min without data either way closes with 1001"
    )
    max_connection_duration_s: float = Field(
        7200, gt=0, description="AWS: 2 h hard limit, closes with 1001"
    )
    integration_timeout_s: float = Field(
        29, gt=0, le=900, description="AWS: 29 s, then 'Endpoint request timed out'"
    )
    outbox_max_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="unsent bytes held per connection; over it a fan-out disconnects the client "
        "and @connections POST answers 429",
    )
    max_inflight_messages: int = Field(
        64,
        gt=0,
        description="messages of one connection being handled at once; above it the gateway "
        "stops reading that socket (TCP back-pressure) instead of queueing without bound",
    )


class ManagementSettings(Strict):
    """The @connections API. SigV4 is checked only when credentials are listed."""

    credentials: list[Credential] = Field(default_factory=list)


class WebSocketApi(ApiBase):
    """An API Gateway WebSocket-compatible API (``type: websocket``)."""

    type: Literal["websocket"]
    stage: str = "dev"
    route_selection_expression: str = "$request.body.action"
    authorizer: AuthorizerSpec | None = None
    routes: dict[RouteKey, RouteSpec] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=lambda: Limits())
    management: ManagementSettings = Field(default_factory=lambda: ManagementSettings())
    api_id: str | None = None
    domain_name: str | None = None
    stage_variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("stage")
    @classmethod
    def _stage(cls, value: str) -> str:
        if not _STAGE.match(value):
            raise ValueError("stage must be 1-128 letters, digits, '-' or '_'")
        return value

    @field_validator("api_id")
    @classmethod
    def _api_id(cls, value: str | None) -> str | None:
        if value is not None and not _API_ID.match(value):
            raise ValueError("api_id must be 10 lowercase letters or digits")
        return value

    @field_validator("route_selection_expression")
    @classmethod
    def _expression(cls, value: str) -> str:
        try:
            SelectionExpression.compile(value)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("routes", mode="before")
    @classmethod
    def _short_routes(cls, value: Any) -> Any:
        """``route: module.function`` is short for ``route: {handler: module.function}``."""
        if isinstance(value, dict):
            return {k: ({"handler": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _route_request_on_connect(self) -> WebSocketApi:
        """Route request headers and query strings exist only on ``$connect`` (AWS "Set up
        data mapping for WebSocket APIs": "supported only for the $connect route")."""
        for key, spec in self.routes.items():
            if spec.http_proxy is None or key == "$connect":
                continue
            reads = connect_only(parse_mapping(spec.http_proxy.request_parameters))
            if reads:
                raise ValueError(
                    f"routes.{key}.http_proxy.request_parameters: {', '.join(reads)}: route "
                    "request headers and query strings can be mapped only on $connect"
                )
        return self

    @model_validator(mode="after")
    def _runtimes_keep_settings(self) -> WebSocketApi:
        functions: list[tuple[str, FunctionSettings]] = [
            (f"routes.{key}", spec) for key, spec in self.routes.items()
        ]
        if self.authorizer is not None:
            functions.append(("authorizer", self.authorizer))
        refuse_inprocess_problems(functions, self.runtime)
        return self

    @property
    def effective_api_id(self) -> str:
        """Configured ``api_id``, else one derived from the name (stable across restarts)."""
        return self.api_id if self.api_id is not None else derived_api_id(self.name, 10)


def handler_refs(i: int, api: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(key path, reference, runtime, code_dir) of a raw API's authorizer and every route (for
    ``gateway.config``, which resolves them before serving)."""
    refs: list[tuple[str, str, str, str | None]] = []
    authorizer = api.get("authorizer")
    if isinstance(authorizer, dict) and isinstance(authorizer.get("handler"), str):
        refs.append(
            (
                f"apis[{i}].authorizer.handler",
                authorizer["handler"],
                handler_runtime(api, authorizer),
                handler_code_dir(api, authorizer),
            )
        )
    routes = api.get("routes")
    if isinstance(routes, dict):
        for key, spec in routes.items():
            handler = spec.get("handler") if isinstance(spec, dict) else spec
            if isinstance(handler, str):
                loc = f"apis[{i}].routes.{key}"
                refs.append((loc, handler, handler_runtime(api, spec), handler_code_dir(api, spec)))
    return refs
