"""``labctl kme network``: three KME processes over key that two links generated at once.

Two ``labctl run configs/sim.yaml`` processes generate key at the same time, one per link
(a-b and b-c, each its own simulated pair of stations and stores); then a, b and c each run
``labctl kme network`` and curl, with the generated certificates, gets a key at a for sae-c
and the same key at c, while nobody else gets it. Minutes of CPU: marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def network_file(folder: Path) -> tuple[Path, dict[str, str]]:
    data = yaml.safe_load((REPO / "configs" / "network-abc.yaml").read_text())
    net = data["network"]
    urls = {}
    for node in net["nodes"]:
        port = free_port()
        net["nodes"][node]["listen"] = f"127.0.0.1:{port}"
        urls[node] = f"https://127.0.0.1:{port}"
    net["certs_dir"] = "certs"
    net["ledger_dir"] = "ledgers"
    for link in net["links"]:
        ends = link["nodes"]
        link["stores"] = {ends[0]: f"{link['id']}/keys-alice.sqlite",
                          ends[1]: f"{link['id']}/keys-bob.sqlite"}  # fmt: skip
    path = folder / "network.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, urls


def generate(folder: Path, link: str) -> subprocess.Popen[str]:
    """Key generation of one link (a simulated station pair) into folder/link/."""
    out = folder / link
    sets = {
        "storage.key_store": out / "keys.sqlite",
        "storage.calibration_store": out / "calibration.json",
        "storage.runs_dir": out / "runs",
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "labctl", "run", "configs/sim.yaml", "--duration", "40s", *args]
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV
    )


def serve(config: Path, node: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "labctl", "kme", "network", str(config), "--node", node]
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV
    )


def curl(certs: Path, sae: str, url: str) -> tuple[int, Any]:
    out = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", "--cacert", str(certs / "ca.pem"),
         "--cert", str(certs / f"{sae}.pem"), "--key", str(certs / f"{sae}.key"), url],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    body, code = out.stdout.rsplit("\n", 1)
    return int(code), json.loads(body)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (.ci/run installs it)")
def test_relay_a_to_c_over_key_of_two_links_generated_at_once(tmp_path: Path) -> None:
    from labctl.cli.main import main
    from labctl.store.keystore import KeyStore

    config, urls = network_file(tmp_path)
    runs = {link: generate(tmp_path, link) for link in ("ab", "bc")}  # both links at once
    for link, run in runs.items():
        out, _ = run.communicate(timeout=280)
        assert run.returncode == 0, f"{link}: {out[-2000:]}"
    for link in ("ab", "bc"):
        sizes = []
        for end in ("alice", "bob"):
            with KeyStore(tmp_path / link / f"keys-{end}.sqlite") as store:
                sizes.append([(k, n) for _, k, n in store.sizes_after(0)])
        assert sizes[0] == sizes[1] and sum(n for _, n in sizes[0]) >= 4 * 256, (link, sizes)
    saes = ["sae-a", "sae-b", "sae-c", "sae-x"]
    kmes = ["kme-a", "kme-b", "kme-c"]
    args = ["kme", "certs", str(tmp_path / "certs")]
    assert main([*args, *(a for k in kmes for a in ("--kme", k)), *(a for s in saes for a in ("--sae", s))]) == 0  # fmt: skip  # noqa: E501
    procs = {node: serve(config, node) for node in ("a", "b", "c")}
    try:
        for node, proc in procs.items():
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("kme serve: listening on"):
                    break
            else:
                pytest.fail(f"kme network --node {node} did not start")
        certs = tmp_path / "certs"
        code, enc = curl(certs, "sae-a", f"{urls['a']}/api/v1/keys/sae-c/enc_keys?number=2")
        assert code == 200, enc
        dec_path = f"/api/v1/keys/sae-a/dec_keys?key_ID={enc['keys'][0]['key_ID']}"
        # Nobody else: an SAE of c the key is not for, an SAE of b, an SAE of no KME.
        assert curl(certs, "sae-x", urls["c"] + dec_path)[0] == 401
        assert curl(certs, "sae-b", urls["b"] + dec_path)[0] == 400
        for key in enc["keys"]:
            dec_one = f"{urls['c']}/api/v1/keys/sae-a/dec_keys?key_ID={key['key_ID']}"
            code, dec = curl(certs, "sae-c", dec_one)
            assert code == 200, dec
            assert dec == {"keys": [key]}
        code, again = curl(certs, "sae-c", urls["c"] + dec_path)
        assert code == 400 and again["details"][0]["reason"] == "already delivered"
        code, status = curl(certs, "sae-a", f"{urls['a']}/api/v1/keys/sae-c/status")
        assert code == 200 and status["target_KME_ID"] == "kme-c"
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        outputs = {node: proc.communicate(timeout=30)[0] for node, proc in procs.items()}
    for node, proc in procs.items():
        assert proc.returncode == 0, outputs[node]
        assert "kme network: stopped" in outputs[node]
        for key in enc["keys"]:  # the logs name no key
            assert key["key"] not in outputs[node]
