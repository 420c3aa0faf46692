"""The configuration file's shape (README "Configuration reference" documents every key).

The top level (listener, TLS, logging, broker, workers) and the list of APIs, told apart by
``type:``; each API type's settings live in its front door's package. Unknown keys are errors,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from sockway.brokers.settings import MAX_WORKERS, BrokerSettings, workers_problem
from sockway.console.settings import ConsoleSettings
from sockway.events.settings import EventsApi
from sockway.frontdoor.settings import Strict
from sockway.observability.access_log import PRESETS, VARIABLES, unknown_variables
from sockway.pusher.settings import PusherApp
from sockway.runtimes.node_sdk import NodejsSettings
from sockway.runtimes.settings import FunctionSettings, refuse_inprocess_problems
from sockway.websocket.settings import WebSocketApi


def parse_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"``, ``":8080"`` (all interfaces) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"'{value}' is not host:port (e.g. 127.0.0.1:8080)")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {int(port)} is out of range (0-65535; 0 picks a free port)")
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


class AccessLogSettings(Strict):
    """Access logs as API Gateway writes them: one line per connect, disconnect, refused
    handshake and routed message, for every API (``observability/access_log.py``)."""

    enabled: bool = True
    format: str = Field(
        "text",
        min_length=1,
        description="text, json, or a template of $context variables (API Gateway's names)",
    )

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        unknown = unknown_variables(value)
        if unknown:
            raise ValueError(
                f"unknown variable {', '.join(unknown)}; known: "
                + ", ".join(f"$context.{v}" for v in VARIABLES)
            )
        if value not in PRESETS and "$context." not in value:
            raise ValueError("must be text, json or a template using $context variables")
        return value


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
    nodejs: NodejsSettings = Field(
        default_factory=lambda: NodejsSettings(), description="runtime: nodejs functions"
    )
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access_log: AccessLogSettings = Field(default_factory=lambda: AccessLogSettings())
    console: ConsoleSettings = Field(default_factory=lambda: ConsoleSettings())
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
        refuse_inprocess_problems(value.items(), "inprocess")
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

    @model_validator(mode="after")
    def _console_protected(self) -> Settings:
        c = self.console
        if c.enabled is True and c.token is None and not self.loopback_only():
            raise ValueError(
                "console: enabled on a listener that is not a loopback address needs a token "
                "(console.token), or set console.enabled: false"
            )
        return self

    def auto_tls_hosts(self) -> list[str]:
        """The names and addresses the ``certificate: auto`` server certificate covers: the
        listeners' hosts and ``tls.names``. The supervisor of ``--workers N`` makes it for
        the same list its workers ask for, so they find it valid and never rewrite it."""
        assert self.tls is not None
        hosts = [parse_hostport(self.listen)[0]]
        if self.tls.listen is not None:
            hosts.append(parse_hostport(self.tls.listen)[0])
        return hosts + list(self.tls.names)

    def loopback_only(self) -> bool:
        """Every listener binds a loopback address (127.0.0.0/8, ::1, localhost)."""
        hosts = [parse_hostport(self.listen)[0]]
        if self.tls is not None and self.tls.listen is not None:
            hosts.append(parse_hostport(self.tls.listen)[0])
        return all(is_loopback(h) for h in hosts)


def is_loopback(host: str) -> bool:
    """A bind address only this machine can reach. ``0.0.0.0`` and ``::`` are not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere
