"""One template's resources after intrinsic resolution, and the ids sockway gives them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def derived_id(seed: str, length: int) -> str:
    """A stable id of ``length`` lowercase letters and digits (API Gateway's id shape)."""
    digest = hashlib.sha256(seed.encode()).digest()
    while len(digest) < length:
        digest += hashlib.sha256(digest).digest()
    return "".join(_ALPHABET[b % 36] for b in digest[:length])


@dataclass
class Resource:
    logical_id: str
    type: str
    properties: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def where(self, *keys: str) -> str:
        return ".".join([self.logical_id, "Properties", *keys])


def by_type(resources: dict[str, Resource], *types: str) -> list[Resource]:
    return [r for r in resources.values() if r.type in types]
