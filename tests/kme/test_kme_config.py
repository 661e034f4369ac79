"""The kme: section: defaults, relative paths, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labctl.interfaces.errors import ConfigError
from labctl.kme.config import load_kme_config, node_ledger_path, parse_kme_section
from labctl.station.loader import load_config


def section(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "nodes": {
            "alice": {"kme_id": "kme-alice", "listen": "0.0.0.0:8443"},
            "bob": {"kme_id": "kme-bob", "listen": "127.0.0.1:8444"},
        },
        "saes": [
            {"sae_id": "alice-sae", "node": "alice"},
            {"sae_id": "bob-sae", "node": "bob", "cn": "bob.example"},
        ],
    }
    data.update(extra)
    return data


def test_defaults_and_bindings(tmp_path: Path) -> None:
    config = parse_kme_section(section(), base=tmp_path)
    assert (config.key_size_bits, config.allocator) == (256, "alice")
    assert config.certs_dir == tmp_path / "kme-certs"
    assert node_ledger_path(config.ledger, "bob") == tmp_path / "kme-ledger-bob.sqlite"
    assert config.peer_of("alice") == "bob"
    assert (
        config.nodes["alice"].peer_url() == "https://127.0.0.1:8443"
    )  # 0.0.0.0 is dialled on loopback
    binding = config.sae("bob-sae")
    assert binding is not None and binding.common_name == "bob.example"


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"key_size_bits": 100}, "kme.key_size_bits", "multiple of 8"),
        ({"key_size_bits": "256"}, "kme.key_size_bits", "integer"),
        ({"min_key_size_bits": 512}, "kme.key_size_bits", "min_key_size_bits <= key_size_bits"),
        ({"allocator": "carol"}, "kme.allocator", "'carol' is not one of"),
        ({"max_key_per_request": 0}, "kme.max_key_per_request", "greater than 0"),
        ({"pool_size": 1}, "kme.pool_size", "Extra inputs"),
        ({"saes": []}, "kme.saes", "at least 1"),
        ({"saes": [{"sae_id": "x", "node": "carol"}]}, "kme.saes.0.node", "'carol' is not"),
        ({"saes": [{"sae_id": "a b", "node": "alice"}]}, "kme.saes.0.sae_id", "pattern"),
        ({"saes": [{"sae_id": "kme-bob", "node": "alice"}]}, "kme.saes.0.cn", "already a KME"),
        ({"nodes": {"alice": {"kme_id": "k", "listen": "8443"}}}, "kme.nodes.alice", "host:port"),
    ],
)
def test_bad_fields_are_named(extra: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_kme_section(section(**extra), file="station.yaml")
    assert info.value.field == field and info.value.file == "station.yaml"
    assert words in str(info.value)


def test_missing_section_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("lab: l\nnode: n\n")
    with pytest.raises(ConfigError, match="no kme: section"):
        load_kme_config(load_config(path))
    path.write_text(
        "lab: l\nnode: n\nkme:\n  nodes:\n    alice: {kme_id: a, listen: '1:2'}\n"
        "    bob: {kme_id: b, listen: '1:3'}\n  saes:\n    - {sae_id: s, node: alice}\n"
        "  max_key_count: -1\n"
    )
    with pytest.raises(ConfigError) as info:
        load_kme_config(load_config(path))
    assert info.value.field == "kme.max_key_count" and info.value.line == 9
