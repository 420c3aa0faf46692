"""The configuration file's shape (README "Configuration reference" documents every key).

Every bound is declared once here with its default and the reason for it (DESIGN habit 4).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sockway.auth.authorizer import IdentitySourceError, check_identity_source
from sockway.config.broker import MAX_WORKERS, BrokerSettings, workers_problem
from sockway.config.remote import HttpSettings, InvocationType, LambdaSettings
from sockway.integrations.refs import HandlerForm, handler_form
from sockway.protocols.apigw.routing import ExpressionError, SelectionExpression

_STAGE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
_API_ID = re.compile(r"^[a-z0-9]{10}$")
_RESERVED_ROUTES = frozenset({"$connect", "$disconnect", "$default"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":8080"`` (all interfaces) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not host:port (e.g. 127.0.0.1:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _check_route_key(key: str) -> str:
    if not key:
        raise ValueError("route key must not be empty")
    if key.startswith("$") and key not in _RESERVED_ROUTES:
        raise ValueError(
            f"route key '{key}': only $connect, $disconnect and $default may start with '$'"
        )
    return key


RouteKey = Annotated[str, AfterValidator(_check_route_key)]

# How a Python handler runs (README "Handler runtimes"): ``inprocess`` calls it in the gateway
# process (fastest); ``process`` runs it in worker processes of its own (isolated, killable).
Runtime = Literal["inprocess", "process"]
DEFAULT_RUNTIME: Runtime = "inprocess"


def handler_runtime(api: dict[str, Any], spec: Any) -> str:
    """A raw handler's runtime: its own ``runtime`` key, else its API's, else the default."""
    for source in (spec, api):
        value = source.get("runtime") if isinstance(source, dict) else None
        if isinstance(value, str):
            return value
    return DEFAULT_RUNTIME


class FunctionSettings(_Strict):
    """Per-handler function settings; unset keys fall back to the API's."""

    runtime: Runtime | None = Field(None, description="overrides the API's runtime")
    memory_mb: int | None = Field(
        None, ge=128, le=10240, description="overrides the API's memory_mb for this function"
    )
    reserved_concurrency: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="process runtime: invocations of this function at once; over it the call "
        "is throttled (TooManyRequestsException), as Lambda's reserved concurrency",
    )


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
    timeout_s: float | None = Field(None, gt=0, le=900)

    @field_validator("identity_source")
    @classmethod
    def _sources(cls, value: list[str]) -> list[str]:
        for source in value:
            try:
                check_identity_source(source)
            except IdentitySourceError as exc:
                raise ValueError(str(exc)) from exc
        return value


class Limits(_Strict):
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


class Credential(_Strict):
    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1, repr=False)


class ManagementSettings(_Strict):
    """The @connections API. SigV4 is checked only when credentials are listed."""

    credentials: list[Credential] = Field(default_factory=list)


class ApiBase(_Strict):
    """Keys every API type has: its name and how its handlers run."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    code_dir: Path | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = Field("123456789012", pattern=r"^\d{12}$")
    memory_mb: int = Field(128, ge=128, le=10240)
    runtime: Runtime = Field(DEFAULT_RUNTIME, description="default runtime of the API's handlers")
    http: HttpSettings = Field(default_factory=lambda: HttpSettings())
    lambda_: LambdaSettings = Field(default_factory=lambda: LambdaSettings(), alias="lambda")


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

    @property
    def effective_api_id(self) -> str:
        """Configured ``api_id``, else one derived from the name (stable across restarts)."""
        if self.api_id is not None:
            return self.api_id
        digest = hashlib.sha256(self.name.encode()).digest()
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(alphabet[b % 36] for b in digest[:10])


class TlsSettings(_Strict):
    """TLS. Without ``listen``, TLS is served on the main port next to plain HTTP/WebSocket."""

    listen: str | None = None
    certificate: Literal["auto"] | Path = "auto"
    key: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hostport(value)
        return value

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if self.certificate != "auto" and self.key is None:
            raise ValueError("a certificate file needs its key file ('key')")
        if self.certificate == "auto" and self.key is not None:
            raise ValueError("'key' is only used with a certificate file, not certificate: auto")
        return self


# Every API type, told apart by ``type:``. A new type adds its settings class here, its name
# to ``config.loader.API_TYPES`` and its builder to ``server.frontdoors.BUILDERS``.
from sockway.config.appsync import EventsApi  # noqa: E402 (builds on ApiBase above)
from sockway.config.pusher import PusherApp  # noqa: E402  (it builds on ApiBase above)

Api = Annotated[WebSocketApi | PusherApp | EventsApi, Field(discriminator="type")]


class Settings(_Strict):
    """The whole configuration file."""

    listen: str = "127.0.0.1:8080"
    tls: TlsSettings | None = None
    state_dir: Path = Path(".sockway")
    handler_threads: int = Field(
        64, gt=0, le=1024, description="threads running sync in-process handlers"
    )
    shutdown_grace_s: float = Field(
        10, ge=0, description="SIGTERM: time allowed for $disconnect handlers before exit"
    )
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    apis: list[Api] = Field(default_factory=list)
    broker: BrokerSettings | None = Field(
        None, description="the Redis broker shared by the nodes; none = this process alone"
    )
    workers: int = Field(
        1,
        ge=1,
        le=MAX_WORKERS,
        description="gateway processes sharing the port (SO_REUSEPORT); more than 1 needs broker",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_hostport(value)
        return value

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int, info: ValidationInfo) -> int:
        # ``broker`` is declared first, so it is in ``info.data`` unless it was itself invalid
        # (then that error is reported and this check would only add noise).
        if "broker" in info.data:
            problem = workers_problem(value, info.data["broker"])
            if problem is not None:
                raise ValueError(problem)
        return value
