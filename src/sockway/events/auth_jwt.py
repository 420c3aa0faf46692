"""JWT checks of OPENID_CONNECT and AMAZON_COGNITO_USER_POOLS requests (spec §3.3), with pyjwt.

The token (optionally ``Bearer ``-prefixed) must be signed by a key of the provider's JWKS (a
file, or a URL fetched and cached for ``JWKS_TTL_S``), not expired, issued by the provider's
issuer, and — when configured — carry a client id (``aud`` of an ID token, ``client_id`` of an
access token: Amplify sends Cognito *access* tokens) matching the provider's regex. OIDC's
``iat_ttl_ms`` / ``auth_ttl_ms`` bound the token's age and the time since authentication.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import aiohttp
import jwt

from sockway.events.settings import CognitoProvider, OidcProvider
from sockway.events.wire import unauthorized

log = logging.getLogger("sockway.appsync.auth")

JWKS_TTL_S = 300.0  # a URL's key set is re-fetched after this (key rotation)
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]


def _bare(token: str) -> str:
    return token[7:].strip() if token[:7].lower() == "bearer " else token.strip()


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim of a JWT-shaped token, unverified (only to pick the mode), else None."""
    try:
        claims = jwt.decode(_bare(token), options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


class JwtVerifier:
    def __init__(self) -> None:
        self._sets: dict[str, tuple[float, jwt.PyJWKSet]] = {}

    async def _key_set(self, provider: OidcProvider | CognitoProvider) -> jwt.PyJWKSet:
        source = str(provider.jwks_file or provider.jwks_url)
        cached = self._sets.get(source)
        if cached is not None and (provider.jwks_file is not None or cached[0] > time.monotonic()):
            return cached[1]
        if provider.jwks_file is not None:
            document = json.loads(provider.jwks_file.read_text())
        else:
            assert provider.jwks_url is not None
            async with (
                aiohttp.ClientSession() as http,
                http.get(provider.jwks_url, timeout=aiohttp.ClientTimeout(total=10)) as resp,
            ):
                resp.raise_for_status()
                document = await resp.json(content_type=None)
        keys = jwt.PyJWKSet.from_dict(document)
        self._sets[source] = (time.monotonic() + JWKS_TTL_S, keys)
        return keys

    async def identity(
        self, provider: OidcProvider | CognitoProvider, token: str, source_ip: str, now: float
    ) -> dict[str, Any]:
        """Verify ``token``; return the handler identity (spec §3.3) or raise unauthorized."""
        bare = _bare(token)
        try:
            keys = await self._key_set(provider)
            kid = jwt.get_unverified_header(bare).get("kid")
            key = next((k for k in keys.keys if kid is None or k.key_id == kid), None)
            if key is None:
                raise jwt.InvalidKeyError(f"no key with kid {kid!r}")
            issuer = (
                provider.issuer if isinstance(provider, OidcProvider) else provider.expected_issuer
            )
            claims: dict[str, Any] = jwt.decode(
                bare,
                key.key,
                algorithms=_ALGORITHMS,
                issuer=issuer,
                options={"verify_aud": False, "require": ["exp", "iss"]},
            )
        except (jwt.PyJWTError, OSError, ValueError, aiohttp.ClientError) as exc:
            log.info("JWT rejected: %s", exc)
            raise unauthorized() from None
        pattern = (
            provider.client_id
            if isinstance(provider, OidcProvider)
            else provider.app_id_client_regex
        )
        if pattern is not None and not _client_matches(pattern, claims):
            raise unauthorized()
        if isinstance(provider, OidcProvider):
            _check_ttl(claims.get("iat"), provider.iat_ttl_ms, now)
            _check_ttl(claims.get("auth_time"), provider.auth_ttl_ms, now)
            return {"claims": claims, "issuer": claims["iss"], "sub": claims.get("sub")}
        return {
            "sub": claims.get("sub"),
            "issuer": claims["iss"],
            "username": claims.get("cognito:username", claims.get("username")),
            "claims": claims,
            "sourceIp": [source_ip],
            "defaultAuthStrategy": "ALLOW",
            "groups": claims.get("cognito:groups"),
        }


def _client_matches(pattern: str, claims: dict[str, Any]) -> bool:
    aud = claims.get("aud")
    candidates = [*(aud if isinstance(aud, list) else [aud]), claims.get("client_id")]
    return any(isinstance(c, str) and re.fullmatch(pattern, c) for c in candidates)


def _check_ttl(issued: Any, ttl_ms: int, now: float) -> None:
    if ttl_ms and (not isinstance(issued, int | float) or (now - issued) * 1000 > ttl_ms):
        raise unauthorized()
