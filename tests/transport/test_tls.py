"""``wss://`` without a proxy: ``--ssl-certfile`` and ``--ssl-keyfile``, with a certificate made here."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.transport.edge_support import (
    UPGRADE,
    back_to,
    connect_as,
    descriptors,
    edge_server,
    exchange,
    stream_a_run,
)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsguard test")])
    now = datetime.datetime.now(datetime.UTC)
    loopback = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(loopback, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_a_wss_client_streams_a_run_and_plaintext_on_the_tls_port_is_refused(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    flags = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    with edge_server(*flags, tls_ca=str(cert)) as server:
        assert server.ws_url.startswith("wss://")

        async def over_tls() -> list[str]:
            client = await connect_as(server, "tina")
            try:
                return await stream_a_run(client)
            finally:
                await client.close()

        names = asyncio.run(over_tls())
        assert names[0] == "agent_started"
        assert names[-1] == "agent_completed"

        baseline = descriptors(server)
        answer = exchange(server.port, UPGRADE + b"\r\n", timeout=2.0)
        assert answer.closed, f"plaintext on the TLS port was left open: {answer}"
        assert answer.seconds < 1.0, answer
        assert b"HTTP/1.1 101" not in answer.data
        back_to(server, baseline, timeout=2.0)


def test_the_certificate_can_come_from_the_environment_in_one_file(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    with edge_server(tls_ca=str(cert), env={"WSGUARD_SSL_CERTFILE": str(combined)}) as server:
        response = server.http.get("/readyz")
        assert response.status_code == 200
        assert str(response.url).startswith("https://")
