"""Username/password and TLS (CA + client certificate) against a Mosquitto started here."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from labctl.documents import Document
from labctl.stream.client import make_client
from labctl.stream.mosquitto import Mosquitto, TlsFiles
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import recording
from labctl.stream.settings import settings_from_config

USER, PASSWORD = "alice-node", "correct horse battery staple"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (EC P-256)."""
    folder.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=labctl-test-ca", cwd=folder)  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
                "-extfile", "san.ext", cwd=folder)  # fmt: skip


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    root = tmp_path_factory.mktemp("secure")
    make_certs(root / "pki")
    pki = root / "pki"
    tls = TlsFiles(pki / "ca.crt", pki / "server.crt", pki / "server.key", require_client_cert=True)
    broker = Mosquitto(root / "broker", users={USER: PASSWORD}, tls=tls)
    broker.start()
    yield broker
    broker.stop()


def config(tmp_path: Path, broker: Mosquitto, tls: bool, password: str = PASSWORD) -> dict:
    (tmp_path / "mqtt.pw").write_text(password + "\n")
    section: dict = {"username": USER, "password_file": "mqtt.pw"}
    if tls:
        pki = broker.conf.parent.parent / "pki"
        section["url"] = f"mqtts://127.0.0.1:{broker.tls_port}"
        section["tls"] = {
            "ca_file": str(pki / "ca.crt"),
            "cert_file": str(pki / "client.crt"),
            "key_file": str(pki / "client.key"),
        }
    else:
        section["url"] = broker.url
    return section


@pytest.mark.parametrize("tls", [False, True], ids=["password", "tls+password"])
async def test_authenticated_publisher_delivers(
    secure_broker: Mosquitto, tmp_path: Path, tls: bool
) -> None:
    settings = settings_from_config(config(tmp_path, secure_broker, tls), tmp_path)
    assert settings.password == PASSWORD
    assert PASSWORD not in repr(settings)
    async with recording(settings, "labctl/v1/lab/alice/#", client_id=f"rec-{tls}") as rec:
        async with MqttPublisher(
            settings, lab="lab", node="alice", outbox_dir=tmp_path / "outbox"
        ) as pub:
            for seq in range(20):
                pub.emit(Document("event", "r-sec", seq, time.time(), "primary", {}))
            assert await pub.flush(15)
        assert await rec.wait_for(lambda: len(rec.runs.seqs("r-sec")) == 20, 15)


async def test_wrong_password_is_refused(secure_broker: Mosquitto, tmp_path: Path) -> None:
    settings = settings_from_config(
        config(tmp_path, secure_broker, tls=False, password="wrong"), tmp_path
    )
    with pytest.raises(aiomqtt.MqttError):
        async with make_client(settings, "intruder"):
            pass


async def test_tls_without_client_certificate_is_refused(
    secure_broker: Mosquitto, tmp_path: Path
) -> None:
    section = config(tmp_path, secure_broker, tls=True)
    del section["tls"]["cert_file"], section["tls"]["key_file"]
    settings = settings_from_config(section, tmp_path)
    with pytest.raises(aiomqtt.MqttError):
        async with make_client(settings, "no-cert"):
            pass
