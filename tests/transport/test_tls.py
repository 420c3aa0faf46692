"""Development TLS material (transport/tls.py): creation, reuse, renewal, a real handshake."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from sockway.transport.tls import TlsMaterial, auto_certificate, ca_bundle


def san_of(path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_auto_certificate_creates_the_files(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path / "state", [])
    directory = tmp_path / "state" / "tls"
    assert isinstance(material, TlsMaterial)
    assert material.ca_file == directory / "ca.pem"
    assert material.cert_file == directory / "server.pem"
    assert material.key_file == directory / "server-key.pem"
    for name in ("ca.pem", "ca-key.pem", "server.pem", "server-key.pem"):
        assert (directory / name).is_file()
    assert material.cert_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert material.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in material.key_file.read_bytes()


def test_private_keys_are_owner_only(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    for key in (material.key_file, material.key_file.with_name("ca-key.pem")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_certificate_names(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, ["gateway.test", "0.0.0.0", "10.1.2.3"])
    san = san_of(material.cert_file)
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "gateway.test"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    }


def test_server_certificate_is_issued_by_the_ca(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    assert material.ca_file is not None
    ca = x509.load_pem_x509_certificate(material.ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(material.cert_file.read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_second_call_reuses_the_same_files(tmp_path: Path) -> None:
    first = auto_certificate(tmp_path, ["gateway.test"])
    before = snapshot(tmp_path / "tls")
    second = auto_certificate(tmp_path, ["gateway.test"])
    assert second == first
    assert snapshot(tmp_path / "tls") == before


def test_subset_of_names_reuses_the_certificate(tmp_path: Path) -> None:
    auto_certificate(tmp_path, ["gateway.test"])
    before = snapshot(tmp_path / "tls")
    auto_certificate(tmp_path, [])
    assert snapshot(tmp_path / "tls") == before


def test_new_host_regenerates_the_server_certificate_only(tmp_path: Path) -> None:
    auto_certificate(tmp_path, [])
    before = snapshot(tmp_path / "tls")
    material = auto_certificate(tmp_path, ["other.test"])
    after = snapshot(tmp_path / "tls")
    assert after["ca.pem"] == before["ca.pem"]
    assert after["ca-key.pem"] == before["ca-key.pem"]
    assert after["server.pem"] != before["server.pem"]
    assert "other.test" in san_of(material.cert_file).get_values_for_type(x509.DNSName)


def test_missing_server_key_regenerates_the_pair(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    old_cert = material.cert_file.read_bytes()
    material.key_file.unlink()
    again = auto_certificate(tmp_path, [])
    assert again.key_file.is_file()
    assert again.cert_file.read_bytes() != old_cert
    again.server_context()  # the new key matches the new certificate


def test_new_ca_replaces_the_server_certificate(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    old = snapshot(tmp_path / "tls")
    (tmp_path / "tls" / "ca-key.pem").unlink()
    auto_certificate(tmp_path, [])
    new = snapshot(tmp_path / "tls")
    assert new["ca.pem"] != old["ca.pem"]
    assert new["server.pem"] != old["server.pem"]
    assert material.ca_file is not None
    ca = x509.load_pem_x509_certificate(material.ca_file.read_bytes())
    x509.load_pem_x509_certificate(material.cert_file.read_bytes()).verify_directly_issued_by(ca)


def test_server_context_offers_http11(tmp_path: Path) -> None:
    ctx = auto_certificate(tmp_path, []).server_context()
    assert isinstance(ctx, ssl.SSLContext)


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
async def test_real_handshake_verifies_with_the_ca(tmp_path: Path, server_hostname: str) -> None:
    material = auto_certificate(tmp_path, [])
    assert material.ca_file is not None

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=material.server_context())
    port = server.sockets[0].getsockname()[1]
    try:
        client = ssl.create_default_context(cafile=str(material.ca_file))
        client.set_alpn_protocols(["http/1.1"])
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=server_hostname
            )
            ssl_object = writer.get_extra_info("ssl_object")
            assert ssl_object.selected_alpn_protocol() == "http/1.1"
            writer.write(b"ping\n")
            await writer.drain()
            assert await reader.readline() == b"ping\n"
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


async def test_handshake_fails_for_a_name_not_in_the_certificate(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    assert material.ca_file is not None

    async def noop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(noop, "127.0.0.1", 0, ssl=material.server_context())
    port = server.sockets[0].getsockname()[1]
    try:
        client = ssl.create_default_context(cafile=str(material.ca_file))
        async with asyncio.timeout(10):
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    "127.0.0.1", port, ssl=client, server_hostname="not-listed.test"
                )
    finally:
        server.close()
        await server.wait_closed()


def test_ca_bundle_contains_existing_bundle_and_ca(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path / "state", [])
    assert material.ca_file is not None
    other = auto_certificate(tmp_path / "elsewhere", [])
    assert other.ca_file is not None
    existing = tmp_path / "public.pem"
    existing.write_bytes(other.ca_file.read_bytes())
    bundle = ca_bundle(material.ca_file, str(existing))
    assert bundle == material.ca_file.with_name("ca-bundle.pem")
    data = bundle.read_bytes()
    assert existing.read_bytes().strip() in data
    assert material.ca_file.read_bytes().strip() in data
    certs = x509.load_pem_x509_certificates(data)
    assert len(certs) == 2
    # Python's ssl accepts the bundle and trusts both CAs.
    ctx = ssl.create_default_context(cafile=str(bundle))
    assert len(ctx.get_ca_certs()) == 2


def test_ca_bundle_is_rewritten_not_appended(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    assert material.ca_file is not None
    existing = tmp_path / "public.pem"
    existing.write_bytes(material.ca_file.read_bytes())
    first = ca_bundle(material.ca_file, str(existing)).read_bytes()
    second = ca_bundle(material.ca_file, str(existing)).read_bytes()
    assert first == second


def test_ca_bundle_ignores_itself_as_existing(tmp_path: Path) -> None:
    # AWS_CA_BUNDLE may already point at our own bundle from a previous start.
    material = auto_certificate(tmp_path, [])
    assert material.ca_file is not None
    bundle = ca_bundle(material.ca_file, None)
    again = ca_bundle(material.ca_file, str(bundle))
    assert again.read_bytes().count(material.ca_file.read_bytes().strip()) == 1


def test_ca_bundle_without_existing_uses_the_system_cafile(tmp_path: Path) -> None:
    material = auto_certificate(tmp_path, [])
    assert material.ca_file is not None
    bundle = ca_bundle(material.ca_file, str(tmp_path / "does-not-exist.pem"))
    data = bundle.read_bytes()
    assert data.endswith(material.ca_file.read_bytes())
    system = ssl.get_default_verify_paths().cafile
    if system and Path(system).is_file():
        assert Path(system).read_bytes().strip() in data


def _make_and_load(state_dir: str, worker: int, rounds: int) -> str:
    """One process of the race below: alternate host lists (each forces a new server
    certificate) and load the pair each time, as a gateway starting does."""
    try:
        for i in range(rounds):
            material = auto_certificate(Path(state_dir), [f"w{worker}-{i}.example.test"])
            material.server_context()
    except Exception as exc:  # reported to the parent, which asserts on it
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def test_processes_making_the_certificate_at_once_never_mix_key_and_certificate(
    tmp_path: Path,
) -> None:
    """The workers of ``--workers N`` (or gateways sharing a state directory) that need a new
    server certificate at the same moment: each reads a key and certificate of one
    generation (without the lock: ``KEY_VALUES_MISMATCH``, seen in ``make test``)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(6) as pool:
        results = pool.starmap(_make_and_load, [(str(tmp_path), w, 25) for w in range(6)])
    assert results == ["ok"] * 6
