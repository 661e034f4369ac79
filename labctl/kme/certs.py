"""A test CA with KME and SAE certificates (``labctl kme certs``), made with ``cryptography``.

For a lab or a demo, not a production PKI: one self-signed CA (``ca.pem``, ``ca.key``), a
certificate per KME (server and client use: it also authenticates to the peer KME) valid
for its KME ID (which the peer KME checks) and the given host names and addresses, and a
client certificate per SAE whose CN is the SAE ID. Private keys are written with mode 0600
and never printed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
VALID_DAYS = 825


@dataclass(frozen=True)
class Issued:
    """What was written: the CA and each name's certificate and key files."""

    ca: Path
    certs: dict[str, tuple[Path, Path]]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # also when the file existed with wider rights


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: str, issuer: str, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
    )


def make_certs(
    out_dir: Path,
    *,
    kmes: Iterable[str],
    saes: Iterable[str],
    hosts: Iterable[str] = DEFAULT_HOSTS,
    ca_name: str = "labctl test KME CA",
) -> Issued:
    """Write a CA and certificates for ``kmes`` (server + client) and ``saes`` (client)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(out_dir / "ca.key", ca_key)
    _write_cert(out_dir / "ca.pem", ca_cert)
    issued: dict[str, tuple[Path, Path]] = {}
    host_list = list(hosts)
    for name, server in [(k, True) for k in kmes] + [(s, False) for s in saes]:
        if name in issued or name == "ca":
            raise ValueError(f"certificate name '{name}' given twice (or is 'ca')")
        key = ec.generate_private_key(ec.SECP256R1())
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = (
            _builder(name, ca_name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            # The KME's ID is one of its names: the peer KME checks it (server_hostname).
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(_san([name, *host_list]), critical=False)
        cert = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
            ca_key, hashes.SHA256()
        )
        cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
        _write_key(key_path, key)
        _write_cert(cert_path, cert)
        issued[name] = (cert_path, key_path)
    return Issued(out_dir / "ca.pem", issued)
