"""TLS for the KME: server and client contexts under one test CA, and the peer's CN.

The KME requires a client certificate signed by the CA (mutual TLS); the certificate's
subject CN names the caller (an SAE ID, or the peer KME's ID). File names follow
``labctl kme certs``: ``ca.pem`` and ``{name}.pem`` / ``{name}.key`` in one folder.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from labctl.interfaces.errors import ConfigError


def cert_paths(certs_dir: Path, name: str) -> tuple[Path, Path]:
    """The certificate and key files of ``name`` in ``certs_dir``."""
    return certs_dir / f"{name}.pem", certs_dir / f"{name}.key"


def _load(context: ssl.SSLContext, certs_dir: Path, name: str) -> ssl.SSLContext:
    cert, key = cert_paths(certs_dir, name)
    ca = certs_dir / "ca.pem"
    for path in (ca, cert, key):
        if not path.is_file():
            raise ConfigError(
                f"missing {path.name} (make them with `labctl kme certs {certs_dir} ...`)",
                file=str(path),
                field="kme.certs_dir",
            )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load TLS files of '{name}': {exc}", file=str(cert)) from None
    return context


def server_context(certs_dir: Path, kme_id: str) -> ssl.SSLContext:
    """The KME's server side: its own certificate, client certificates required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.verify_mode = ssl.CERT_REQUIRED
    return _load(context, certs_dir, kme_id)


def client_context(certs_dir: Path, name: str) -> ssl.SSLContext:
    """A client presenting ``name``'s certificate and checking the server's against the CA."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    return _load(context, certs_dir, name)


def common_name(peercert: Any) -> str | None:
    """The subject CN of a certificate as ``SSLSocket.getpeercert()`` returns it."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName" and isinstance(value, str):
                return value
    return None
