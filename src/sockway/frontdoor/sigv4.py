"""SigV4 verification of ``@connections`` calls (apigw spec §4.3, §4.4), using botocore's signer.

Also used by AppSync Events ``AWS_IAM`` (appsync spec §3.4). The client's ``Authorization``
header names the access key, date, region, service and signed headers. The credential scope must
name the service the API is (``execute-api`` for API Gateway, ``appsync`` for AppSync) and the
API's configured region, as AWS requires: a signature made for ``s3``, ``lambda`` or another
region is refused with ``InvalidSignatureException`` and AWS's own message. We then rebuild the
same request with botocore (which URI-encodes the wire path again, as the client did when
signing), compute the signature with the configured secret and compare in constant time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<akid>[^/\s]+)/(?P<date>\d{8})/(?P<region>[^/\s]+)/"
    r"(?P<service>[^/\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)
MAX_SKEW = dt.timedelta(minutes=15)


class SigV4Failure(Exception):
    """403 with the AWS error type and message to return."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def verify(
    *,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    secrets: Mapping[str, str],
    now: dt.datetime,
    service: str,
    region: str,
) -> str:
    """Check the request's SigV4 signature; return the access key id, or raise ``SigV4Failure``.

    ``url`` is scheme://host + the raw (still percent-encoded) path and query, as received.
    ``service`` and ``region`` are what the credential scope must name (checked before the
    signature, as AWS does: a correctly signed request for another scope is still refused).
    """
    lowered: dict[str, str] = {}
    for k, v in headers:
        lowered[k.lower()] = v
    auth = lowered.get("authorization")
    if not auth:
        raise SigV4Failure("MissingAuthenticationTokenException", "Missing Authentication Token")
    m = _AUTH.match(auth.strip())
    if m is None:
        raise SigV4Failure(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders'.",
        )
    if m["region"] != region:
        raise SigV4Failure(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{m['region']}'. ",
        )
    if m["service"] != service:
        raise SigV4Failure(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'. ",
        )
    secret = secrets.get(m["akid"])
    if secret is None:
        raise SigV4Failure(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    amz_date = lowered.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise SigV4Failure(
            "IncompleteSignatureException", "Missing or invalid X-Amz-Date"
        ) from None
    if abs(now - when) > MAX_SKEW or amz_date[:8] != m["date"]:
        raise SigV4Failure("InvalidSignatureException", "Signature expired: " + amz_date)
    signed = m["signed"].split(";")
    if "host" not in signed:
        raise SigV4Failure("InvalidSignatureException", "'Host' must be a signed header")
    # botocore signs the x-amz-content-sha256 value instead of hashing the body when that header
    # is present; make sure it is the body's hash, or a signed request could carry another body.
    # hmac.compare_digest takes ASCII str only: a non-ASCII value (headers arrive decoded as
    # latin-1) is compared as bytes, so it is a mismatch (403), never a TypeError (500).
    declared = lowered.get("x-amz-content-sha256")
    digest = hashlib.sha256(body).hexdigest().encode()
    if declared is not None and not hmac.compare_digest(
        declared.encode("utf-8", "surrogateescape"), digest
    ):
        raise SigV4Failure(
            "InvalidSignatureException",
            "The provided x-amz-content-sha256 header does not match the hash of the body.",
        )
    request = AWSRequest(
        method=method, url=url, data=body, headers={h: lowered.get(h, "") for h in signed}
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(m["akid"], secret), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, m["sig"]):
        raise SigV4Failure(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return m["akid"]
