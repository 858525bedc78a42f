"""DNS fixtures: a real DNS server on loopback (tests/dns_stub.py) and DKIM key files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dns_stub import Zone, dns_server


@pytest.fixture
def dns_zone() -> Iterator[Zone]:
    """A dnslib server on a free loopback UDP port; write records into the Zone it yields."""
    with dns_server() as zone:
        yield zone


def write_rsa_key(path: Path, bits: int = 2048) -> Path:
    """A fresh unencrypted RSA private key in PEM at ``path`` (0600, as an operator keeps it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def dkim_pem(tmp_path_factory) -> bytes:
    """One 2048-bit RSA key for the session (generating one costs ~100 ms)."""
    return write_rsa_key(tmp_path_factory.mktemp("dkim") / "dkim.pem").read_bytes()
