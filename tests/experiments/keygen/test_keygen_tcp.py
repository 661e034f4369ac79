"""Alice and Bob over a real TCP connection (authenticated channel) produce identical keys."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from labctl.link.tcp_links import accept_channels, connect_channels
from labctl.qkd.auth.channel import tcp_pair
from labctl.qkd.auth.transcript import AuthPool, pool_path, psk_parts
from tests.experiments.keygen.keygen_helpers import run_keygen, store_rows, write_config


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


async def test_tcp_links_with_wegman_carter_store_identical_keys_and_account_the_pool(
    tmp_path: Path,
) -> None:
    """The links of ``labctl node`` (handshake, pool session, checkpoints) under a run."""
    config = write_config(tmp_path, qkd={"auth_pool_slots": 200})
    runs = tmp_path / "runs"
    psk = os.urandom(4096)
    link_key, _ = psk_parts(psk)
    alice_pool = AuthPool.open(pool_path(runs / "keys-alice.sqlite"), "alice", psk)
    bob_pool = AuthPool.open(pool_path(runs / "keys-bob.sqlite"), "bob", psk)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    accepting = asyncio.create_task(
        accept_channels(
            "127.0.0.1", 0, 1, link_key, 10.0, lambda h, p: port.set_result(p), pool=alice_pool
        )
    )
    bobs = await connect_channels("127.0.0.1", await port, 1, link_key, 10.0, pool=bob_pool)
    alices = await accepting
    result = await run_keygen(config, duration_s=0.5, channels=(alices[0], bobs[0]))
    assert result.status == "ok", result.reason
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["blocks"] == 1 and summary["authentication"]["checkpoints"] == 3
    assert summary["auth_key_bits"] > 0 and summary["eps_auth"] > 0
    rows = store_rows(runs / "keys-alice.sqlite")
    assert len(rows) == 1 and rows == store_rows(runs / "keys-bob.sqlite")
    net = summary["secret_bits"] - summary["auth_key_bits"]
    assert rows[0][1] == summary["net_key_bits"] == net
    # Both pools took the same refill: the same slots are left at both ends.
    for d in ("ab", "ba"):
        assert alice_pool.streams[d].end == bob_pool.streams[d].end
        assert alice_pool.available(d) == bob_pool.available(d)  # type: ignore[arg-type]
