"""Authorization of AppSync Events connect / subscribe / publish requests (spec §3).

Each request carries its own authorization headers (the connect headers, a message's
``authorization`` object, or the HTTP headers). The mode is inferred from their content
(spec §3.1): ``x-api-key`` → API_KEY; ``Authorization: AWS4-HMAC-SHA256 ...`` → AWS_IAM; a JWT
whose issuer matches a configured OIDC / Cognito provider → that mode; any other
``Authorization`` → AWS_LAMBDA. The inferred mode must be one of the operation's allowed modes.
Every failure is ``UnauthorizedException`` "You are not authorized to make this call.".
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sockway.core.channels import ChannelPath
from sockway.events import auth_jwt as events_jwt
from sockway.events.handler_events import (
    authorizer_answer,
    authorizer_request,
    lambda_identity,
)
from sockway.events.settings import (
    ApiKeyProvider,
    AuthType,
    CognitoProvider,
    EventsApi,
    IamProvider,
    LambdaAuthProvider,
    OidcProvider,
)
from sockway.events.wire import unauthorized
from sockway.frontdoor.sigv4 import SigV4Failure, verify
from sockway.runtimes.base import Integration, Invocation, InvocationError, InvocationTimeout

log = logging.getLogger("sockway.appsync.auth")

CONNECT = "EVENT_CONNECT"
PUBLISH = "EVENT_PUBLISH"
SUBSCRIBE = "EVENT_SUBSCRIBE"
MAX_CACHED_DECISIONS = 10_000  # cached AWS_LAMBDA decisions per token, operation and channel


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One request to authorize. ``headers`` keys are lower-case.

    ``signed_body`` is the body an AWS_IAM signature covers: the HTTP body, or for WebSocket
    operations the virtual ``POST /event`` body of spec §3.4.
    """

    operation: str
    channel: ChannelPath | None
    headers: Mapping[str, str]
    signed_body: bytes
    source_ip: str


def lower_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Keys lower-cased (spec §2.2: match case-insensitively); non-string values dropped."""
    return {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}


class EventsAuth:
    """The configured providers of one events API."""

    def __init__(
        self,
        api: EventsApi,
        lambda_integration: Integration | None,
        new_id: Callable[[], str],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.providers = {p.type: p for p in api.auth_providers}
        self.lambda_integration = lambda_integration
        self.new_id = new_id
        self.wall_clock = wall_clock
        self.jwt = events_jwt.JwtVerifier()
        self._cache: dict[tuple[str, str, str | None], tuple[float, dict[str, Any] | None]] = {}

    def infer_mode(self, headers: Mapping[str, str]) -> AuthType | None:
        if "x-api-key" in headers:
            return "API_KEY"
        token = headers.get("authorization")
        if token is None:
            return None
        if token.startswith("AWS4-HMAC-SHA256"):
            return "AWS_IAM"
        issuer = events_jwt.unverified_issuer(token)
        if issuer is not None:
            for provider in self.providers.values():
                if isinstance(provider, OidcProvider) and provider.issuer == issuer:
                    return "OPENID_CONNECT"
                if isinstance(provider, CognitoProvider) and provider.expected_issuer == issuer:
                    return "AMAZON_COGNITO_USER_POOLS"
        return "AWS_LAMBDA"

    async def authorize(self, request: AuthRequest, modes: list[AuthType]) -> Any:
        """Return the handler ``identity`` (spec §6.2), or raise ``EventsError`` unauthorized."""
        mode = self.infer_mode(request.headers)
        if mode is None or mode not in modes:
            raise unauthorized()
        provider = self.providers[mode]
        if isinstance(provider, ApiKeyProvider):
            return self._api_key(provider, request.headers["x-api-key"])
        if isinstance(provider, LambdaAuthProvider):
            return await self._lambda(provider, request)
        if isinstance(provider, OidcProvider | CognitoProvider):
            return await self.jwt.identity(
                provider, request.headers["authorization"], request.source_ip, self.wall_clock()
            )
        if isinstance(provider, IamProvider):
            return self._iam(provider, request)
        raise unauthorized()

    def _api_key(self, provider: ApiKeyProvider, given: str) -> None:
        now = dt.datetime.fromtimestamp(self.wall_clock(), dt.UTC)
        ok = False
        for key in provider.keys:
            # Compare with every key (no early exit) in constant time per key.
            match = hmac.compare_digest(key.key.encode(), given.encode())
            ok |= match and key.valid_at(_aware(now, key.expires))
        if not ok:
            raise unauthorized()
        return None  # spec §3.2: identity is not populated for API keys

    def _iam(self, provider: IamProvider, request: AuthRequest) -> dict[str, Any]:
        host = request.headers.get("host", "")
        secrets = {c.access_key_id: c.secret_access_key for c in provider.credentials}
        try:
            access_key = verify(
                method="POST",
                url=f"https://{host}/event",
                headers=list(request.headers.items()),
                body=request.signed_body,
                secrets=secrets,
                now=dt.datetime.fromtimestamp(self.wall_clock(), dt.UTC),
                service="appsync",  # appsync spec §3.4: service appsync, the API's region
                region=self.api.region,
            )
        except SigV4Failure as exc:
            log.info("AWS_IAM signature rejected: %s", exc.error_type)
            raise unauthorized() from None
        account = self.api.account_id
        return {
            "accountId": account,
            "cognitoIdentityPoolId": None,
            "cognitoIdentityId": None,
            "sourceIp": [request.source_ip],
            "username": access_key,
            "userArn": f"arn:aws:iam::{account}:user/{access_key}",
            "cognitoIdentityAuthType": None,
            "cognitoIdentityAuthProvider": None,
        }

    async def _lambda(self, provider: LambdaAuthProvider, request: AuthRequest) -> dict[str, Any]:
        token = request.headers["authorization"]
        expression = provider.identity_validation_expression
        if expression is not None and re.fullmatch(expression, token) is None:
            raise unauthorized()
        channel = request.channel.path if request.channel is not None else None
        key = (token, request.operation, channel)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return lambda_identity(cached[1])
        assert self.lambda_integration is not None
        request_id = self.new_id()
        event = authorizer_request(
            token=token,
            api_id=self.api.effective_api_id,
            account_id=self.api.account_id,
            request_id=request_id,
            operation=request.operation,
            channel=request.channel,
            headers=request.headers,
        )
        timeout = provider.timeout_s or self.api.limits.handler_timeout_s
        try:
            result = await self.lambda_integration.invoke(event, Invocation(request_id, timeout))
        except (InvocationError, InvocationTimeout) as exc:
            log.error("AWS_LAMBDA authorizer failed: %s", exc)
            raise unauthorized() from None
        decision = authorizer_answer(result)
        if not decision.authorized:
            raise unauthorized()
        ttl = decision.ttl_s if decision.ttl_s is not None else provider.result_ttl_s
        if ttl > 0:
            if len(self._cache) >= MAX_CACHED_DECISIONS:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= MAX_CACHED_DECISIONS:
                    self._cache.clear()
            self._cache[key] = (now + ttl, decision.context)
        return lambda_identity(decision.context)


def _aware(now: dt.datetime, expires: dt.datetime | None) -> dt.datetime:
    """``now`` comparable with ``expires`` (a naive expiry is read as UTC)."""
    if expires is not None and expires.tzinfo is None:
        return now.replace(tzinfo=None)
    return now
