"""Pusher signatures (pusher spec §2 channel/user auth, §3.1 HTTP API signing, §4.1 webhooks).

Every comparison of a presented signature is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

_EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def hmac_hex(secret: str, message: str | bytes) -> str:
    body = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _matches(presented: str, key: str, secret: str, string_to_sign: str) -> bool:
    expected = f"{key}:{hmac_hex(secret, string_to_sign)}"
    return hmac.compare_digest(presented.encode(), expected.encode())


def channel_auth_ok(
    auth: str, *, key: str, secret: str, socket_id: str, channel: str, channel_data: str | None
) -> bool:
    """``auth`` for a private, encrypted or presence subscribe (§2).

    Presence signs the exact ``channel_data`` string received, never a re-serialised copy.
    """
    to_sign = f"{socket_id}:{channel}"
    if channel_data is not None:
        to_sign += f":{channel_data}"
    return _matches(auth, key, secret, to_sign)


def user_auth_ok(auth: str, *, key: str, secret: str, socket_id: str, user_data: str) -> bool:
    """``auth`` of a ``pusher:signin`` (§1.7): signs ``socket_id::user::user_data``."""
    return _matches(auth, key, secret, f"{socket_id}::user::{user_data}")


class RequestAuthError(Exception):
    """An HTTP API request is not signed as the SDKs sign (answered 401)."""


def verify_request(
    *,
    method: str,
    path: str,
    params: Iterable[tuple[str, str]],
    body: bytes,
    key: str,
    secret: str,
    now_s: float,
    window_s: float,
) -> None:
    """Check an HTTP API request's query signature (§3.1); raise ``RequestAuthError``.

    ``params`` are the URL-decoded query parameters. Signed string:
    ``METHOD\\nPATH\\nk=v&...`` over every parameter but ``auth_signature``, sorted by key,
    unencoded. ``body_md5``, when present, must be the MD5 of the raw body (the py SDK sends it
    on GET too); a non-empty body requires it. ``auth_key`` must be the app's key and
    ``auth_timestamp`` within ``window_s`` of now (decision per the spec: ±600 s).
    """
    query: dict[str, str] = {}
    for name, value in params:
        if name in query:
            raise RequestAuthError(f"Duplicate query parameter {name}.")
        query[name] = value
    signature = query.pop("auth_signature", None)
    for required in ("auth_key", "auth_timestamp", "auth_version"):
        if required not in query:
            raise RequestAuthError(f"Missing {required}.")
    if signature is None:
        raise RequestAuthError("Missing auth_signature.")
    if not hmac.compare_digest(query["auth_key"].encode(), key.encode()):
        raise RequestAuthError("Unknown auth_key.")
    # The SDKs send whole unix seconds (``int(time.time())``). Only ASCII digits are taken:
    # ``float()`` would accept "nan" (every comparison with it is false, so it passed the
    # window forever), "inf", "1e9", "1_700_000_000" and non-ASCII digits.
    raw_timestamp = query["auth_timestamp"]
    if not (0 < len(raw_timestamp) <= 15 and raw_timestamp.isascii() and raw_timestamp.isdigit()):
        raise RequestAuthError("auth_timestamp is not a number of whole seconds.")
    timestamp = int(raw_timestamp)
    if abs(now_s - timestamp) > window_s:
        raise RequestAuthError(
            f"Timestamp expired: {abs(now_s - timestamp):.0f} s from server time "
            f"(max {window_s:.0f})."
        )
    body_md5 = hashlib.md5(body).hexdigest()
    if "body_md5" in query:
        if not hmac.compare_digest(query["body_md5"].encode(), body_md5.encode()):
            raise RequestAuthError("body_md5 does not match the body.")
    elif body_md5 != _EMPTY_MD5:
        raise RequestAuthError("Missing body_md5.")
    to_sign = "\n".join([method.upper(), path, "&".join(f"{k}={query[k]}" for k in sorted(query))])
    if not hmac.compare_digest(signature.encode(), hmac_hex(secret, to_sign).encode()):
        raise RequestAuthError("Invalid signature: you should have sent HmacSHA256Hex(...).")


def webhook_signature(secret: str, body: bytes) -> str:
    """``X-Pusher-Signature``: HMAC-SHA256 hex over the exact body bytes sent (§4.1)."""
    return hmac_hex(secret, body)
