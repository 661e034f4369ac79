"""Alice and Bob over a real TCP connection (authenticated channel) produce identical keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keygen_helpers import run_keygen, store_rows, write_config

from labctl.qkd.auth import tcp_pair


async def test_nodes_over_tcp_store_identical_keys(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    alice, bob, server = await tcp_pair(os.urandom(32), timeout_s=30.0)
    try:
        result = await run_keygen(config, duration_s=0.5, channels=(alice, bob))
    finally:
        server.close()
        await server.wait_closed()
    assert result.status == "ok", result.reason
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["blocks"] == 1 and summary["secret_bits"] > 0
    rows = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert len(rows) == 1 and rows == store_rows(tmp_path / "runs" / "keys-bob.sqlite")
