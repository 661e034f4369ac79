"""Fixtures: a test CA, two identical node key stores and a running KME pair on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labctl.kme.certs import make_certs
from labctl.kme.config import KmeConfig, parse_kme_section
from labctl.kme.service import KmeService
from labctl.qkd.secret import SecretBits
from labctl.store.keystore import KeyStore

SAES = ("alice-sae", "bob-sae", "carol-sae", "eve-sae")


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CA, KME and SAE certificates; eve-sae is certified but bound to no KME."""
    out = tmp_path_factory.mktemp("kme-certs")
    make_certs(out, kmes=["kme-alice", "kme-bob"], saes=list(SAES))
    return out


def kme_section(certs_dir: Path, ledger: Path, **extra: Any) -> dict[str, Any]:
    """A kme: section for alice-sae at Alice, bob-sae and carol-sae at Bob."""
    section: dict[str, Any] = {
        "certs_dir": str(certs_dir),
        "ledger": str(ledger),
        "key_size_bits": 256,
        "max_key_per_request": 16,
        "low_water_keys": 2,
        "nodes": {
            "alice": {"kme_id": "kme-alice", "listen": "127.0.0.1:0"},
            "bob": {"kme_id": "kme-bob", "listen": "127.0.0.1:0"},
        },
        "saes": [
            {"sae_id": "alice-sae", "node": "alice"},
            {"sae_id": "bob-sae", "node": "bob"},
            {"sae_id": "carol-sae", "node": "bob"},
        ],
    }
    section.update(extra)
    return section


def fill_stores(folder: Path, n_keys: int = 8, n_bits: int = 1001) -> tuple[Path, Path]:
    """Two stores with the same keys under the same ids (as the node pair leaves them)."""
    paths = folder / "keys-alice.sqlite", folder / "keys-bob.sqlite"
    keys = [
        (str(uuid.uuid4()), SecretBits.from_bytes(os.urandom(126), n_bits)) for _ in range(n_keys)
    ]
    for path in paths:
        with KeyStore(path) as store:
            for key_id, bits in keys:
                store.add(bits, key_id=key_id)
    return paths


@dataclass
class Pair:
    """Alice's and Bob's KMEs, running, and what they were built from."""

    alice: KmeService
    bob: KmeService
    config: KmeConfig
    stores: tuple[Path, Path]
    certs_dir: Path


async def start_pair(config: KmeConfig, stores: tuple[Path, Path]) -> tuple[KmeService, KmeService]:
    alice = await KmeService.open(config, "alice", stores[0])
    try:
        bob = await KmeService.open(config, "bob", stores[1])
    except BaseException:
        await alice.close()
        raise
    alice.set_peer_url(bob.url)
    bob.set_peer_url(alice.url)
    return alice, bob


@pytest.fixture
async def pair(tmp_path: Path, certs_dir: Path) -> AsyncIterator[Pair]:
    stores = fill_stores(tmp_path)
    config = parse_kme_section(kme_section(certs_dir, tmp_path / "ledger.sqlite"))
    alice, bob = await start_pair(config, stores)
    try:
        yield Pair(alice, bob, config, stores, certs_dir)
    finally:
        await alice.close()
        await bob.close()


@dataclass
class Kit:
    """Builders for tests that need their own stores or config."""

    certs_dir: Path
    folder: Path

    def section(self, **extra: Any) -> dict[str, Any]:
        return kme_section(self.certs_dir, self.folder / "ledger.sqlite", **extra)

    def stores(self, n_keys: int = 8, n_bits: int = 1001) -> tuple[Path, Path]:
        return fill_stores(self.folder, n_keys, n_bits)

    async def start(
        self, config: KmeConfig, stores: tuple[Path, Path]
    ) -> tuple[KmeService, KmeService]:
        return await start_pair(config, stores)


@pytest.fixture
def kit(tmp_path: Path, certs_dir: Path) -> Kit:
    return Kit(certs_dir, tmp_path)


@pytest.fixture
def client_files(certs_dir: Path) -> Callable[[str], tuple[str, str, str]]:
    """(cert, key, ca) file names of an SAE."""

    def files(name: str) -> tuple[str, str, str]:
        return (
            str(certs_dir / f"{name}.pem"),
            str(certs_dir / f"{name}.key"),
            str(certs_dir / "ca.pem"),
        )

    return files
