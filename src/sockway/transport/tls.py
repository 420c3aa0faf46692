"""TLS contexts: user-supplied certificate/key, or ``certificate: auto`` for local development.

``auto`` creates a local CA and a server certificate for ``localhost``, ``127.0.0.1``, ``::1``
and the listener's host, kept in ``{state_dir}/tls/`` and reused across runs (regenerated when
it is about to expire or lacks a needed name). Trust ``ca.pem`` in clients (``AWS_CA_BUNDLE``
for boto3 — set automatically for in-process handlers —, ``NODE_EXTRA_CA_CERTS`` for Node,
``SSL_CERT_FILE`` for Python's ssl, ``--ca`` for wscat).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=825)
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsMaterial:
    cert_file: Path
    key_file: Path
    ca_file: Path | None  # set for certificate: auto

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if self.ca_file is None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        else:  # certificate: auto: read the pair while no other process rewrites it
            with _locked(self.cert_file.parent, fcntl.LOCK_SH):
                ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def _names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", *hosts]):
        if host in ("", "0.0.0.0", "::"):
            continue
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


@contextlib.contextmanager
def _locked(directory: Path, mode: int) -> Iterator[None]:
    """``{state_dir}/tls/.lock``: one process at a time makes the files (the workers of
    ``--workers N``, several gateways sharing a state directory), and none reads a key of one
    generation beside a certificate of another."""
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` atomically: the worker processes of ``--workers N`` (and handlers
    reading ``ca-bundle.pem``) never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _write_private(path: Path, data: bytes) -> None:
    _write(path, data, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ensure_ca(
    directory: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_file, ca_key_file = directory / "ca.pem", directory / "ca-key.pem"
    if ca_file.exists() and ca_key_file.exists():
        cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        key = serialization.load_pem_private_key(ca_key_file.read_bytes(), None)
        if cert.not_valid_after_utc - _RENEW_BEFORE > now and isinstance(
            key, ec.EllipticCurvePrivateKey
        ):
            return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sockway local development CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_key_file, _key_pem(key))
    _write(ca_file, cert.public_bytes(serialization.Encoding.PEM))
    # A new CA invalidates the old server certificate.
    (directory / "server.pem").unlink(missing_ok=True)
    return cert, key


def _server_cert_ok(
    path: Path, ca: x509.Certificate, names: list[x509.GeneralName], now: dt.datetime
) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _RENEW_BEFORE <= now:
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(n in san for n in names)


def auto_certificate(state_dir: Path, hosts: list[str]) -> TlsMaterial:
    """Create (or reuse) the development CA and a server certificate valid for ``hosts``."""
    directory = state_dir / "tls"
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory, fcntl.LOCK_EX):
        return _auto_certificate(directory, hosts)


def _auto_certificate(directory: Path, hosts: list[str]) -> TlsMaterial:
    now = dt.datetime.now(dt.UTC)
    ca, ca_key = _ensure_ca(directory, now)
    cert_file, key_file = directory / "server.pem", directory / "server-key.pem"
    names = _names(hosts)
    if not (_server_cert_ok(cert_file, ca, names, now) and key_file.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(key_file, _key_pem(key))
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return TlsMaterial(cert_file=cert_file, key_file=key_file, ca_file=directory / "ca.pem")


def ca_bundle(ca_file: Path, existing: str | None) -> Path:
    """``ca-bundle.pem`` beside ``ca_file``: the public CAs plus the development CA.

    The public part comes from ``existing`` (a previous ``AWS_CA_BUNDLE``), else from the
    system's default CA file, else botocore's own default bundle. Rewritten at every start so
    it follows its sources.
    """
    bundle = ca_file.with_name("ca-bundle.pem")
    from botocore.httpsession import get_cert_path

    sources = [existing, ssl.get_default_verify_paths().cafile, get_cert_path(True)]
    public = b""
    for source in sources:
        if source and Path(source).is_file() and Path(source).resolve() != bundle.resolve():
            public = Path(source).read_bytes()
            break
    _write(bundle, public.rstrip(b"\n") + b"\n" + ca_file.read_bytes())
    return bundle
