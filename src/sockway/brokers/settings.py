"""The ``broker:`` and ``workers:`` settings: how the processes of one gateway share state
(issue 6; README "Configuration reference" and docs/deployment.md).

The Redis URL may carry a password: it is redacted from every error message (DESIGN habit 9).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from sockway.brokers.base import DEFAULT_UNSUBSCRIBE_GRACE_S

_KEY_PREFIX = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
# A worker count beyond this is a typo, not a machine (each worker is one core's process).
MAX_WORKERS = 256


class BrokerSettings(BaseModel):
    """The Redis broker the nodes of one gateway share (issue 6, docs/deployment.md).

    Without a ``broker`` section every process is a cluster of one (the embedded memory broker).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        repr=False,  # may hold a password
        description="redis://[user:password@]host[:port][/db] or rediss:// (TLS); any node of "
        "a Redis Cluster; with sentinel_master, the address of a Sentinel",
    )
    key_prefix: str = Field(
        "sockway",
        description="prefix of every Redis key and channel, so several gateways share one Redis",
    )
    heartbeat_s: float = Field(
        1.0, gt=0, le=60, description="how often a node renews its liveness key"
    )
    node_ttl_s: float = Field(
        5.0,
        gt=0,
        le=600,
        validate_default=True,  # checked against heartbeat_s also when left at its default
        description="a node whose heartbeat is older than this is dead: its connections, counts "
        "and presence are removed; must exceed 2 heartbeats so one late beat is not a death",
    )
    unsubscribe_grace_s: float = Field(
        DEFAULT_UNSUBSCRIBE_GRACE_S,
        ge=0,
        le=300,
        description="a node keeps a broker subscription this long after its last local "
        "subscriber left (a page reload does not churn Redis)",
    )
    sentinel_master: str | None = Field(
        None, min_length=1, description="name of the master monitored by the Sentinel at url"
    )

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _KEY_PREFIX.match(value):
            raise ValueError("must be 1-64 letters, digits, '_', '-', '.' or ':'")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(
                f"'{_redact(value)}' is not a Redis URL (redis://host:6379/0 or rediss://…)"
            )
        try:
            port = parsed.port
        except ValueError:
            raise ValueError(f"'{_redact(value)}': the port is not a number 0-65535") from None
        if not parsed.hostname:
            raise ValueError(f"'{_redact(value)}': the URL names no host")
        if port == 0:
            raise ValueError(f"'{_redact(value)}': port 0 is not a Redis port")
        db = parsed.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"'{_redact(value)}': the path must be a database number (/0)")
        return value

    @field_validator("node_ttl_s")
    @classmethod
    def _ttl(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_s")  # declared first; absent when itself invalid
        if heartbeat is not None and value <= 2 * heartbeat:
            raise ValueError(
                f"must be greater than 2 * heartbeat_s ({value:g} <= 2 * {heartbeat:g}), or one "
                "late heartbeat would declare a live node dead"
            )
        return value


def _redact(url: str) -> str:
    """The URL without its password (error messages are printed and logged: DESIGN habit 9)."""
    parsed = urlsplit(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def workers_problem(workers: int, broker: BrokerSettings | None) -> str | None:
    """Why ``workers`` processes cannot run with this broker setting, else None."""
    if workers > 1 and broker is None:
        return (
            f"{workers} worker processes need a 'broker' (broker: {{url: redis://…}}): "
            "without one the workers would not share connections and channels"
        )
    return None
