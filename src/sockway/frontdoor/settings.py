"""Settings every API type shares (README "Configuration reference").

Each front door's own settings build on ``ApiBase``; ``Strict`` is the base of every settings
model: unknown keys are errors, so a typo never silently falls back to a default, and settings
are frozen once loaded. Every bound is declared once with its default and the reason for it
(DESIGN habit 4).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sockway.runtimes.settings import DEFAULT_RUNTIME, HttpSettings, LambdaSettings, Runtime


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credential(Strict):
    """An AWS access key pair that SigV4-signed requests are checked against."""

    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1, repr=False)


class ApiBase(Strict):
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


def derived_api_id(name: str, length: int) -> str:
    """An API id of ``length`` characters [a-z0-9] derived from the API's name: stable across
    restarts, as a deployed API's id is."""
    digest = hashlib.sha256(name.encode()).digest()
    return "".join("abcdefghijklmnopqrstuvwxyz0123456789"[b % 36] for b in digest[:length])
