"""The configuration file's shape (README "Configuration reference" documents every key).

The top level (listener, TLS, logging, broker, workers) and the list of APIs, told apart by
``type:``; each API type's settings live in its front door's package. Unknown keys are errors,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sockway.brokers.settings import MAX_WORKERS, BrokerSettings, workers_problem
from sockway.events.settings import EventsApi
from sockway.frontdoor.settings import Strict
from sockway.pusher.settings import PusherApp
from sockway.runtimes.settings import FunctionSettings
from sockway.websocket.settings import WebSocketApi


def parse_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":8080"`` (all interfaces) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{value}' is not host:port (e.g. 127.0.0.1:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class TlsSettings(Strict):
    """TLS. Without ``listen``, TLS is served on the main port next to plain HTTP/WebSocket."""

    listen: str | None = None
    certificate: Literal["auto"] | Path = "auto"
    key: Path | None = None
    names: list[str] = Field(
        default_factory=list,
        description="certificate: auto: more DNS names of the certificate (wildcards allowed)",
    )

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
        if self.certificate != "auto" and self.names:
            raise ValueError("'names' is only used with certificate: auto")
        return self


# Every API type, told apart by ``type:``. A new type adds its settings class here and its
# entry to ``gateway.registry.API_TYPES``.
Api = Annotated[WebSocketApi | PusherApp | EventsApi, Field(discriminator="type")]


class LocalFunction(FunctionSettings):
    """A function answered by name on the Lambda Invoke API (README "The Lambda Invoke API"):
    ``POST /2015-03-31/functions/{name}/invocations`` on the gateway's port."""

    handler: str = Field(description="module.function, from code_dir")
    region: str = "us-east-1"
    account_id: str = Field("123456789012", pattern=r"^\d{12}$")


class Settings(Strict):
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
    functions: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")], LocalFunction] = (
        Field(default_factory=dict, description="functions the Lambda Invoke API serves by name")
    )
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

    @field_validator("functions")
    @classmethod
    def _functions_keep_settings(cls, value: dict[str, LocalFunction]) -> dict[str, LocalFunction]:
        problems = [
            f"{name}.{problem}"
            for name, function in value.items()
            for problem in function.inprocess_problems("inprocess")
        ]
        if problems:
            raise ValueError("; ".join(problems))
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
