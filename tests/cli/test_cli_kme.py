"""``labctl kme certs`` and ``labctl kme serve`` (two real processes, curl between them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.cli.main import EXIT_BAD_INPUT, main
from labctl.qkd.secret import SecretBits
from labctl.store.keystore import KeyStore

REPO = Path(__file__).resolve().parents[2]


def test_certs_writes_ca_kmes_saes_with_private_keys_0600(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert main(["kme", "certs", str(out), "--sae", "alice-sae", "--sae", "bob-sae"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        f"{n}.{ext}"
        for n in ("ca", "kme-alice", "kme-bob", "alice-sae", "bob-sae")
        for ext in ("pem", "key")
    }
    for key in out.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((out / "bob-sae.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=bob-sae"


def test_certs_needs_an_sae(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kme", "certs", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "--sae" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def station_file(folder: Path, extra: dict[str, object] | None = None) -> Path:
    ports = free_port(), free_port()
    data = {
        "lab": "kme-lab",
        "node": "alice-bob",
        "storage": {"key_store": "keys.sqlite"},
        "kme": {
            "certs_dir": "certs",
            "nodes": {
                "alice": {"kme_id": "kme-alice", "listen": f"127.0.0.1:{ports[0]}"},
                "bob": {"kme_id": "kme-bob", "listen": f"127.0.0.1:{ports[1]}"},
            },
            "saes": [
                {"sae_id": "alice-sae", "node": "alice"},
                {"sae_id": "bob-sae", "node": "bob"},
            ],
            **(extra or {}),
        },
    }
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_serve_refuses_a_bad_kme_section_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = station_file(tmp_path, {"key_size_bits": 100})
    assert main(["kme", "serve", str(config), "--node", "alice"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "station.yaml" in err and "key_size_bits" in err and "multiple of 8" in err
    config = station_file(tmp_path)
    assert main(["kme", "serve", str(config), "--node", "carol"]) == EXIT_BAD_INPUT
    assert "--node" in capsys.readouterr().err
    assert main(["kme", "serve", str(config), "--node", "alice"]) == EXIT_BAD_INPUT
    assert "no key store" in capsys.readouterr().err


def spawn(config: Path, node: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labctl", "kme", "serve", str(config), "--node", node],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_listening(process: subprocess.Popen[str], node: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("kme serve: listening on"):
            return
    process.wait(10)
    pytest.fail(f"kme serve --node {node} did not start (exit {process.returncode})")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (.ci/run installs it)")
def test_two_serve_processes_and_curl(tmp_path: Path) -> None:
    config = station_file(tmp_path)
    assert (
        main(["kme", "certs", str(tmp_path / "certs"), "--sae", "alice-sae", "--sae", "bob-sae"])
        == 0
    )
    key = SecretBits.from_bytes(os.urandom(64), 512)
    key_id = str(uuid.uuid4())
    for node in ("alice", "bob"):
        with KeyStore(tmp_path / f"keys-{node}.sqlite") as store:
            store.add(key, key_id=key_id)
    urls = {
        n: "https://" + yaml.safe_load(config.read_text())["kme"]["nodes"][n]["listen"]
        for n in ("alice", "bob")
    }
    procs = [spawn(config, "alice"), spawn(config, "bob")]  # both start at once
    try:
        for proc, node in zip(procs, ("alice", "bob"), strict=True):
            wait_listening(proc, node)

        def curl(sae: str, url: str) -> dict[str, Any]:
            certs = tmp_path / "certs"
            out = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--fail-with-body",
                    "--cacert",
                    str(certs / "ca.pem"),
                    "--cert",
                    str(certs / f"{sae}.pem"),
                    "--key",
                    str(certs / f"{sae}.key"),
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            return dict(json.loads(out.stdout))

        enc = curl("alice-sae", f"{urls['alice']}/api/v1/keys/bob-sae/enc_keys?size=256")
        (item,) = enc["keys"]
        dec = curl(
            "bob-sae", f"{urls['bob']}/api/v1/keys/alice-sae/dec_keys?key_ID={item['key_ID']}"
        )
        assert dec == enc
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            rest, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, rest
            assert "kme serve: stopped" in rest
