"""SigV4 verification of @connections calls (apigw spec §4.3, §4.4).

Requests are signed by botocore exactly as boto3's ``apigatewaymanagementapi`` client signs
them; one test captures a real boto3 request on a loopback HTTP server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from sockway.frontdoor.sigv4 import MAX_SKEW, SigV4Failure, verify

AKID = "AKIDSOCKWAYTEST00001"
SECRET = "s3cr3t/KEY+with=chars"
SECRETS = {AKID: SECRET, "AKIDOTHER": "other-secret"}
HOST = "localhost:8443"
# boto3 percent-encodes the connection id in the wire path (§4.4): "Ab+c/d=" → "Ab%2Bc%2Fd%3D".
URL = f"https://{HOST}/dev/@connections/Ab%2Bc%2Fd%3D"


@dataclass
class Signed:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def sign(
    method: str = "POST",
    url: str = URL,
    body: bytes = b"hi",
    *,
    akid: str = AKID,
    secret: str = SECRET,
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "execute-api",
    extra_headers: dict[str, str] | None = None,
) -> Signed:
    """Sign like boto3 does and return what arrives on the wire (Host included)."""
    request = AWSRequest(method=method, url=url, data=body, headers=extra_headers or {})
    SigV4Auth(Credentials(akid, secret, token), service, region).add_auth(request)
    host = url.split("://", 1)[1].split("/", 1)[0]
    headers = [("Host", host), *((k, str(v)) for k, v in request.headers.items())]
    if body:
        headers.append(("Content-Length", str(len(body))))
    return Signed(method, url, headers, body)


def check(signed: Signed, secrets: dict[str, str] = SECRETS, **override: Any) -> str:
    args: dict[str, Any] = {
        "method": signed.method,
        "url": signed.url,
        "headers": signed.headers,
        "body": signed.body,
        "secrets": secrets,
        "now": signed.now,
        "service": "execute-api",
        "region": "us-east-1",
    }
    args.update(override)
    return verify(**args)


def header(signed: Signed, name: str) -> str:
    return next(v for k, v in signed.headers if k.lower() == name.lower())


def replace_header(signed: Signed, name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k.lower() == name.lower() else v) for k, v in signed.headers]


def failure(signed: Signed, **override: Any) -> SigV4Failure:
    with pytest.raises(SigV4Failure) as info:
        check(signed, **override)
    return info.value


# -- accepted requests ----------------------------------------------------------------------


def test_signed_post_is_accepted_and_returns_the_key() -> None:
    signed = sign()
    auth = header(signed, "Authorization")
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AKID}/")
    assert "/us-east-1/execute-api/aws4_request" in auth
    assert check(signed) == AKID


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_signed_bodyless_requests_are_accepted(method: str) -> None:
    assert check(sign(method, body=b"")) == AKID


@pytest.mark.parametrize(
    "url",
    [
        f"https://{HOST}/dev/@connections/abc%3D",
        f"https://{HOST}/@connections/BFaT_fALIAMCKug%3D",
        f"https://{HOST}/base/path/@connections/JC1dgf9yoAMCK-g%3D",
        f"https://{HOST}/dev/@connections/abc%3D/channels/room%2F1",
        "http://127.0.0.1:8080/dev/@connections/abc%3D",
        "https://abc123defg.execute-api.us-east-1.amazonaws.com/prod/@connections/abc%3D",
    ],
)
def test_various_wire_paths_and_hosts(url: str) -> None:
    assert check(sign(url=url)) == AKID


def test_query_string_is_part_of_the_signature() -> None:
    signed = sign("GET", url=URL + "?b=2&a=1", body=b"")
    assert check(signed) == AKID
    with pytest.raises(SigV4Failure):
        check(signed, url=URL + "?b=3&a=1")


def test_session_token_is_signed_and_accepted() -> None:
    signed = sign(token="session-token")
    assert header(signed, "X-Amz-Security-Token") == "session-token"
    assert "x-amz-security-token" in header(signed, "Authorization")
    assert check(signed) == AKID
    tampered = replace_header(signed, "X-Amz-Security-Token", "other-token")
    assert failure(signed, headers=tampered).error_type == "InvalidSignatureException"


def test_the_apis_own_region_is_accepted() -> None:
    assert check(sign(region="eu-west-1"), region="eu-west-1") == AKID


# -- the credential scope (issue 13 item 4) ---------------------------------------------------


@pytest.mark.parametrize("service", ["s3", "lambda", "appsync", "execute-apiX"])
def test_a_correct_signature_for_another_service_is_refused(service: str) -> None:
    # Signed correctly (botocore) with the right secret, but scoped to another service: AWS
    # answers 403 InvalidSignatureException "Credential should be scoped to correct service".
    exc = failure(sign(service=service))
    assert exc.error_type == "InvalidSignatureException"
    assert exc.message == "Credential should be scoped to correct service: 'execute-api'. "


@pytest.mark.parametrize("region", ["eu-west-1", "us-east-2", "US-EAST-1"])
def test_a_correct_signature_for_another_region_is_refused(region: str) -> None:
    exc = failure(sign(region=region))
    assert exc.error_type == "InvalidSignatureException"
    assert exc.message == f"Credential should be scoped to a valid region, not '{region}'. "


def test_the_service_asked_for_is_the_one_checked() -> None:
    # AppSync Events AWS_IAM verifies with service "appsync" (appsync spec §3.4).
    signed = sign(service="appsync", region="eu-central-1")
    assert check(signed, service="appsync", region="eu-central-1") == AKID
    assert failure(signed, region="eu-central-1").error_type == "InvalidSignatureException"
    assert failure(signed, service="appsync").error_type == "InvalidSignatureException"


# -- x-amz-content-sha256 that is not ASCII (issue 13 item 7) ----------------------------------


@pytest.mark.parametrize("value", ["é" * 64, "\u00ff", "ü" + "0" * 63, "\udcff"])
def test_non_ascii_content_sha256_is_a_403_not_a_crash(value: str) -> None:
    signed = sign()
    headers = [*signed.headers, ("X-Amz-Content-SHA256", value)]
    exc = failure(signed, headers=headers)
    assert exc.error_type == "InvalidSignatureException"


def test_header_names_are_case_insensitive() -> None:
    signed = sign()
    lowered = [(k.lower(), v) for k, v in signed.headers]
    assert check(signed, headers=lowered) == AKID


def test_other_listed_key_is_accepted() -> None:
    assert check(sign(akid="AKIDOTHER", secret="other-secret")) == "AKIDOTHER"


def test_large_binary_body() -> None:
    body = bytes(range(256)) * 512
    assert check(sign(body=body)) == AKID


def test_clock_skew_within_the_bound_is_accepted() -> None:
    signed = sign()
    almost = MAX_SKEW - dt.timedelta(seconds=5)
    assert check(signed, now=signed.now + almost) == AKID
    assert check(signed, now=signed.now - almost) == AKID


def test_max_skew_is_fifteen_minutes() -> None:
    assert dt.timedelta(minutes=15) == MAX_SKEW


# -- rejected requests ------------------------------------------------------------------------


def test_wrong_secret_is_invalid_signature() -> None:
    exc = failure(sign(secret="not-the-secret"))
    assert exc.error_type == "InvalidSignatureException"
    assert "signature" in exc.message.lower()


def test_unknown_key_is_unrecognized_client() -> None:
    exc = failure(sign(akid="AKIDUNKNOWN"))
    assert exc.error_type == "UnrecognizedClientException"


def test_no_credentials_configured_rejects_every_key() -> None:
    assert failure(sign(), secrets={}).error_type == "UnrecognizedClientException"


def test_missing_authorization_header_is_missing_token() -> None:
    signed = sign()
    headers = [(k, v) for k, v in signed.headers if k.lower() != "authorization"]
    exc = failure(signed, headers=headers)
    assert exc.error_type == "MissingAuthenticationTokenException"
    assert exc.message == "Missing Authentication Token"


def test_empty_authorization_header_is_missing_token() -> None:
    signed = sign()
    headers = replace_header(signed, "Authorization", "")
    assert failure(signed, headers=headers).error_type == "MissingAuthenticationTokenException"


@pytest.mark.parametrize(
    "value",
    [
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/execute-api/aws4_request",
        "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    ],
)
def test_malformed_authorization_is_incomplete_signature(value: str) -> None:
    signed = sign()
    exc = failure(signed, headers=replace_header(signed, "Authorization", value))
    assert exc.error_type == "IncompleteSignatureException"


def test_missing_amz_date_is_rejected() -> None:
    signed = sign()
    headers = [(k, v) for k, v in signed.headers if k.lower() != "x-amz-date"]
    assert failure(signed, headers=headers).error_type == "IncompleteSignatureException"


def test_tampered_body_is_rejected() -> None:
    exc = failure(sign(body=b"hi"), body=b"ho")
    assert exc.error_type == "InvalidSignatureException"


def test_appended_body_is_rejected() -> None:
    assert failure(sign(body=b"hi"), body=b"hi!").error_type == "InvalidSignatureException"


def test_tampered_path_is_rejected() -> None:
    signed = sign()
    other = f"https://{HOST}/dev/@connections/Other%3D"
    assert failure(signed, url=other).error_type == "InvalidSignatureException"


def test_decoded_path_is_not_the_signed_path() -> None:
    # The server must pass the raw wire path; the decoded form signs differently (§4.4).
    signed = sign()
    decoded = f"https://{HOST}/dev/@connections/Ab+c/d="
    assert failure(signed, url=decoded).error_type == "InvalidSignatureException"


def test_tampered_stage_is_rejected() -> None:
    signed = sign()
    assert failure(signed, url=URL.replace("/dev/", "/prod/")).error_type == (
        "InvalidSignatureException"
    )


def test_tampered_method_is_rejected() -> None:
    signed = sign("DELETE", body=b"")
    assert failure(signed, method="GET").error_type == "InvalidSignatureException"


def test_tampered_host_is_rejected() -> None:
    signed = sign()
    headers = replace_header(signed, "Host", "evil.example:8443")
    assert failure(signed, headers=headers).error_type == "InvalidSignatureException"


def test_expired_date_is_rejected() -> None:
    signed = sign()
    late = signed.now + MAX_SKEW + dt.timedelta(minutes=1)
    exc = failure(signed, now=late)
    assert exc.error_type == "InvalidSignatureException"
    assert "expired" in exc.message.lower()


def test_date_in_the_future_is_rejected() -> None:
    signed = sign()
    early = signed.now - dt.timedelta(minutes=16)
    assert failure(signed, now=early).error_type == "InvalidSignatureException"


def test_replaced_amz_date_is_rejected() -> None:
    signed = sign()
    when = dt.datetime.strptime(header(signed, "X-Amz-Date"), "%Y%m%dT%H%M%SZ")
    moved = (when + dt.timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    headers = replace_header(signed, "X-Amz-Date", moved)
    # Still within the skew (unless the second crossed midnight: then the scope date differs).
    assert failure(signed, headers=headers).error_type == "InvalidSignatureException"


def test_signature_for_another_service_is_rejected() -> None:
    signed = sign()
    auth = header(signed, "Authorization").replace("/execute-api/", "/s3/")
    headers = replace_header(signed, "Authorization", auth)
    assert failure(signed, headers=headers).error_type == "InvalidSignatureException"


def test_host_must_be_signed() -> None:
    # Re-sign without host in SignedHeaders: a request whose Host is not covered is refused.
    signed = sign()
    auth = header(signed, "Authorization").replace("SignedHeaders=host;", "SignedHeaders=")
    headers = replace_header(signed, "Authorization", auth)
    assert failure(signed, headers=headers).error_type == "InvalidSignatureException"


def test_signed_content_sha256_header_is_accepted() -> None:
    # SDKs other than boto3 (e.g. the JS SDK v3) also sign x-amz-content-sha256.
    digest = hashlib.sha256(b"hi").hexdigest()
    signed = sign(extra_headers={"X-Amz-Content-SHA256": digest})
    assert "x-amz-content-sha256" in header(signed, "Authorization")
    assert check(signed) == AKID


def test_body_not_matching_signed_content_sha256_is_rejected() -> None:
    # The signature covers the header's value, not the body: the body must be checked against
    # it, else a captured request can be replayed with another body.
    digest = hashlib.sha256(b"hi").hexdigest()
    signed = sign(extra_headers={"X-Amz-Content-SHA256": digest})
    with pytest.raises(SigV4Failure):
        check(signed, body=b"tampered")


def test_failure_is_an_ordinary_exception() -> None:
    # Error translation layers use context managers and notes; the failure must survive them
    # unchanged (DESIGN habit 3: typed errors, translated at one boundary).
    @contextlib.contextmanager
    def boundary() -> Iterator[None]:
        yield

    with pytest.raises(SigV4Failure) as info, boundary():
        check(sign(secret="wrong"))
    assert info.value.error_type == "InvalidSignatureException"

    exc = SigV4Failure("InvalidSignatureException", "m")
    exc.add_note("while handling POST @connections")
    assert exc.__notes__ == ["while handling POST @connections"]


# -- a real boto3 request (§4.4) -------------------------------------------------------------


@dataclass
class Captured:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes


class _Recorder(http.server.BaseHTTPRequestHandler):
    captured: list[Captured]

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.captured.append(Captured(self.command, self.path, list(self.headers.items()), body))
        status = 204 if self.command == "DELETE" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.send_header("x-amzn-RequestId", "11111111-2222-3333-4444-555555555555")
        self.end_headers()

    do_POST = _handle
    do_DELETE = _handle
    do_GET = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[Captured]]]:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    captured: list[Captured] = []
    handler = type("Recorder", (_Recorder,), {"captured": captured})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", captured
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client(endpoint: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{endpoint}/dev",
        region_name="us-east-1",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=5),
    )


def verify_captured(endpoint: str, request: Captured, secrets: dict[str, str] = SECRETS) -> str:
    return verify(
        method=request.method,
        url=endpoint + request.path,
        headers=request.headers,
        body=request.body,
        secrets=secrets,
        now=dt.datetime.now(dt.UTC),
        service="execute-api",
        region="us-east-1",
    )


def test_real_boto3_post_to_connection_verifies(recorder: tuple[str, list[Captured]]) -> None:
    endpoint, captured = recorder
    client(endpoint).post_to_connection(ConnectionId="Ab+c/d=", Data=b"hi")
    assert len(captured) == 1
    request = captured[0]
    assert request.method == "POST"
    assert request.path == "/dev/@connections/Ab%2Bc%2Fd%3D"
    assert request.body == b"hi"
    names = {k.lower() for k, _ in request.headers}
    assert {"host", "x-amz-date", "authorization"} <= names
    assert "content-type" not in names
    assert verify_captured(endpoint, request) == AKID


def test_real_boto3_request_fails_with_another_secret(
    recorder: tuple[str, list[Captured]],
) -> None:
    endpoint, captured = recorder
    client(endpoint).post_to_connection(ConnectionId="Ab+c/d=", Data="héllo")
    request = captured[0]
    assert request.body == "héllo".encode()
    with pytest.raises(SigV4Failure) as info:
        verify_captured(endpoint, request, {AKID: "another-secret"})
    assert info.value.error_type == "InvalidSignatureException"
    with pytest.raises(SigV4Failure) as info:
        verify_captured(endpoint, request, {"AKIDOTHER": SECRET})
    assert info.value.error_type == "UnrecognizedClientException"


def test_real_boto3_delete_and_get_verify(recorder: tuple[str, list[Captured]]) -> None:
    endpoint, captured = recorder
    api = client(endpoint)
    api.delete_connection(ConnectionId="BFaT_fALIAMCKug=")
    with contextlib.suppress(Exception):  # our recorder's empty body is not a valid GET answer
        api.get_connection(ConnectionId="JC1dgf9yoAMCK-g=")
    assert [r.method for r in captured] == ["DELETE", "GET"]
    assert captured[0].path == "/dev/@connections/BFaT_fALIAMCKug%3D"
    assert captured[1].path == "/dev/@connections/JC1dgf9yoAMCK-g%3D"
    for request in captured:
        assert request.body == b""
        assert verify_captured(endpoint, request) == AKID


# -- whatever arrives, the answer is a SigV4Failure (403), never another exception (500) ----


_LATIN1 = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=80)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    replaced=st.dictionaries(
        st.sampled_from(
            ["Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "Host", "X-Amz-Security-Token"]
        ),
        _LATIN1,
        max_size=3,
    ),
    path=st.text(max_size=30),
    body=st.binary(max_size=40),
)
def test_any_header_values_fail_cleanly(replaced: dict[str, str], path: str, body: bytes) -> None:
    signed = sign(token="t")
    headers = [(k, replaced.get(k, v)) for k, v in signed.headers]
    headers += [(k, v) for k, v in replaced.items() if k not in {h for h, _ in signed.headers}]
    url = f"https://{HOST}/dev/@connections/{path}"
    with contextlib.suppress(SigV4Failure):
        check(signed, headers=headers, url=url, body=body)
