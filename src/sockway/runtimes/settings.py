"""Settings of the handler runtimes: which runtime a function uses and its per-function keys
(README "Handler runtimes"), and the remote runtimes' API-level blocks every API type has: HTTP
endpoints (``http:``) and AWS Lambda (``lambda:``) (README "HTTP endpoints as handlers",
"AWS Lambda as handlers").

Secrets (``http.secret``, ``http.headers`` values) are excluded from ``repr`` and never logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from sockway.runtimes.request_parameters import RequestParameterError, parse_mapping

InvocationType = Literal["RequestResponse", "Event"]

# How a handler runs (README "Handler runtimes"): ``inprocess`` calls a Python function in the
# gateway process (fastest); ``process`` runs it in worker processes of its own (isolated,
# killable); ``nodejs`` runs a JavaScript handler in Node.js workers (``runtimes.nodejs``).
# Lambda's runtime identifiers (as templates name them) stand for ``nodejs``.
NODE_RUNTIME_ALIASES = frozenset({"nodejs18.x", "nodejs20.x", "nodejs22.x"})


def normalize_runtime(value: Any) -> Any:
    return "nodejs" if isinstance(value, str) and value in NODE_RUNTIME_ALIASES else value


Runtime = Annotated[Literal["inprocess", "process", "nodejs"], BeforeValidator(normalize_runtime)]
DEFAULT_RUNTIME: Runtime = "inprocess"


def handler_runtime(api: dict[str, Any], spec: Any) -> str:
    """A raw handler's runtime: its own ``runtime`` key, else its API's, else the default."""
    for source in (spec, api):
        value = source.get("runtime") if isinstance(source, dict) else None
        if isinstance(value, str):
            return str(normalize_runtime(value))
    return DEFAULT_RUNTIME


def handler_code_dir(api: dict[str, Any], spec: Any) -> str | None:
    """A raw handler's code directory: its own ``code_dir``, else its API's, else None."""
    for source in (spec, api):
        value = source.get("code_dir") if isinstance(source, dict) else None
        if value is not None:
            return str(value)
    return None


class FunctionSettings(BaseModel):
    """Per-handler function settings; unset keys fall back to the API's.

    What each runtime keeps (README "Per-function settings"):

    - ``runtime: process``: every key is honoured. A function's workers see the gateway's
      environment minus every API's and function's own variables, then Lambda's, then the
      API's ``environment`` overlaid with this function's: no function sees another's.
    - ``inprocess``: handlers share the gateway's interpreter, its ``os.environ`` and its
      thread pool. ``timeout_s`` (the caller stops waiting; a sync handler's thread runs on),
      ``code_dir`` (module names must be unique across code directories) and ``memory_mb``
      (reported as ``context.memory_limit_in_mb``, not enforced) are kept. A function's own
      ``environment`` (every in-process function would see it) and ``reserved_concurrency``
      (no per-function slots in a shared pool) cannot be, and ``inprocess_problems`` refuses
      them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: Runtime | None = Field(None, description="overrides the API's runtime")
    code_dir: Path | None = Field(None, description="overrides the API's code_dir")
    environment: dict[str, str] | None = Field(
        None, description="this function's own variables, over the API's environment"
    )
    timeout_s: float | None = Field(
        None, gt=0, le=900, description="overrides the API's handler timeout for this function"
    )
    function_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_\-]{1,64}$",
        description="the name the handler sees (context.function_name, AWS_LAMBDA_FUNCTION_"
        "NAME); default {api}-{route or slot}",
    )
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

    def merged_environment(self, api_environment: Mapping[str, str]) -> dict[str, str]:
        """The API's environment overlaid with this function's own."""
        return {**api_environment, **(self.environment or {})}

    def inprocess_problems(self, api_runtime: str) -> list[str]:
        """``key: reason`` for each setting this function asks for that its runtime cannot
        keep (see the class docstring); empty unless it runs in-process."""
        if (self.runtime or api_runtime) != "inprocess":
            return []
        problems: list[str] = []
        if self.environment:
            problems.append(
                "environment: a function's own variables need runtime: process (in-process "
                "handlers share the gateway's one environment, so every in-process function "
                "would see them)"
            )
        if self.reserved_concurrency is not None:
            problems.append(
                "reserved_concurrency: needs runtime: process (in-process handlers share the "
                "gateway's thread pool, which reserves nothing per function)"
            )
        return problems


def refuse_inprocess_problems(
    functions: Iterable[tuple[str, FunctionSettings]], api_runtime: str
) -> None:
    """Raise ``ValueError`` naming ``where.key`` for every setting one of ``functions``
    (``(where, settings)`` pairs) asks for that its runtime cannot keep (``inprocess_problems``)."""
    problems = [
        f"{where}.{problem}"
        for where, function in functions
        for problem in function.inprocess_problems(api_runtime)
    ]
    if problems:
        raise ValueError("; ".join(problems))


class HttpSettings(BaseModel):
    """How sockway calls ``http://`` / ``https://`` handlers of one API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str | None = Field(
        None, min_length=1, repr=False, description="HMAC-SHA256 key of X-Sockway-Signature"
    )
    secret_env: str | None = Field(
        None, min_length=1, description="name of the environment variable holding the secret"
    )
    max_concurrency: int = Field(
        64,
        gt=0,
        le=10_000,
        description="requests in flight per endpoint URL; more wait (within their timeout)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, repr=False, description="extra request headers (e.g. Authorization)"
    )
    max_response_bytes: int = Field(
        6 * 1024 * 1024, gt=0, description="Lambda's 6 MB synchronous response limit"
    )

    @field_validator("secret_env")
    @classmethod
    def _env_is_set(cls, value: str | None) -> str | None:
        if value is not None and not os.environ.get(value):
            raise ValueError(f"environment variable '{value}' is not set")
        return value

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"'{name}' is set by sockway and cannot be overridden")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> HttpSettings:
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give either 'secret' or 'secret_env', not both")
        return self

    def signing_key(self) -> bytes | None:
        """The secret as bytes (read from ``secret_env`` at start), or None: unsigned calls."""
        if self.secret is not None:
            return self.secret.encode()
        if self.secret_env is not None:
            return os.environ[self.secret_env].encode()
        return None


_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "x-sockway-signature"})


class LambdaSettings(BaseModel):
    """How sockway invokes AWS Lambda handlers of one API (Lambda Invoke API via botocore)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = Field(
        None, pattern=r"^https?://", description="Lambda endpoint (LocalStack-style); default AWS"
    )
    invocation_type: InvocationType = Field(
        "RequestResponse", description="for routes; the authorizer is always RequestResponse"
    )
    profile: str | None = Field(None, min_length=1, description="AWS profile of the chain")
    max_concurrency: int = Field(
        64,
        gt=0,
        le=1024,
        description="Invoke calls in flight per region and endpoint (threads and connections)",
    )
    max_attempts: int = Field(
        1,
        ge=1,
        le=10,
        description="botocore attempts per call; 1: a throttled call fails at once, as API "
        "Gateway does not retry a Lambda integration",
    )
    connect_timeout_s: float = Field(5, gt=0, le=60)


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HttpProxySettings(BaseModel):
    """A route served as API Gateway's ``HTTP_PROXY`` integration (README "HTTP_PROXY
    integrations"): the handler URL receives the client's message as-is, not an event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: HttpMethod = Field("POST", description="IntegrationMethod; API Gateway's default")
    request_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="integration.request.header.NAME / .querystring.NAME ← a mapping "
        "expression (context.connectionId, route.request.body.a.b, 'static', …)",
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("request_parameters")
    @classmethod
    def _mappings(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            parse_mapping(value)
        except RequestParameterError as exc:
            raise ValueError(str(exc)) from None
        return value
