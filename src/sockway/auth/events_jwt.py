"""JWT verification for OPENID_CONNECT and AMAZON_COGNITO_USER_POOLS (spec §3.3). Placeholder."""

from __future__ import annotations

from typing import Any

from sockway.protocols.appsync.messages import unauthorized


def unverified_issuer(token: str) -> str | None:
    return None


class JwtVerifier:
    async def identity(self, provider: Any, token: str, source_ip: str, now: float) -> Any:
        raise unauthorized()
