"""The ``console:`` settings (README "Configuration reference")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class ConsoleSettings(BaseModel):
    """The live console: on by default when every listener is a loopback address; on any
    other address it needs ``token`` (it is off without one, and ``enabled: true`` without a
    token there is a configuration error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | Literal["auto"] = Field(
        "auto", description="auto: on for loopback listeners, or anywhere a token is set"
    )
    path: str = Field("/_sockway/", pattern=r"^/[A-Za-z0-9_\-./]*/$")
    token: SecretStr | None = Field(
        None, description="required on a non-loopback listener: Authorization: Bearer <token>"
    )
    tail_items: int = Field(500, ge=10, le=100_000, description="items kept per view")
    payload_max_bytes: int = Field(
        2048, ge=64, le=1024 * 1024, description="payloads kept truncated to this size"
    )

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (it guards the console's actions)")
        return value

    def active(self, loopback_only: bool) -> bool:
        """Whether the console is served on listeners of this kind."""
        if self.enabled == "auto":
            return loopback_only or self.token is not None
        return self.enabled
