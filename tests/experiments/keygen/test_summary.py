"""experiments.keygen.summary: running totals (bounded memory) equal to per-block sums."""

from __future__ import annotations

import math
import sys
from dataclasses import fields
from typing import Any

import pytest

from experiments.keygen.summary import BlockTotals, KeySummary
from labctl.link import node_base
from labctl.link.node_base import BlockResult, NodeBase
from labctl.link.profile import StageProfile
from labctl.qkd.estimation.entropy import binary_entropy


def _result(i: int) -> BlockResult:
    keyed = i % 3 != 2
    return BlockResult(
        block=i,
        status="key" if keyed else "no-key",
        reason="stored" if keyed else "QBER above qber_max",
        pulses=100_000_000,
        detections=1_860_000 + i,
        sifted_bits=930_000 + i,
        key_basis_bits=465_000 + 7 * i,
        test_basis_bits=465_000 - 3 * i,
        qber_z=None if i % 5 == 4 else 0.017 + 1e-4 * (i % 7),
        qber_x=0.018 + 1e-4 * (i % 4),
        disclosed_bits=70_000 + i,
        ec_efficiency=1.1,
        round_trips=40,
        channel_uses=700 + i,
        secret_bits=50_000 + i if keyed else 0,
        key_id=f"{i:08d}-0000-0000-0000-000000000000" if keyed else None,
        acquired_s=0.1,
    )


def _reference(results: list[BlockResult]) -> dict[str, Any]:
    """The totals as the summary computed them from the list of every block (before)."""
    b = results
    key_bits = sum(r.key_basis_bits for r in b if r.qber_z is not None)
    corrected = sum(r.qber_z * r.key_basis_bits for r in b if r.qber_z is not None)
    test_bits = sum(r.test_basis_bits for r in b if r.qber_x is not None)
    test_err = sum(r.qber_x * r.test_basis_bits for r in b if r.qber_x is not None)
    qber_z = corrected / key_bits
    disclosed = sum(r.disclosed_bits for r in b)
    pulses = sum(r.pulses for r in b)
    secret = sum(r.secret_bits for r in b)
    return {
        "blocks": len(b),
        "blocks_with_key": sum(1 for r in b if r.status == "key"),
        "pulses": pulses,
        "acquired_s": sum(r.acquired_s for r in b),
        "detections": sum(r.detections for r in b),
        "sifted_bits": sum(r.sifted_bits for r in b),
        "qber_z": qber_z,
        "qber_x": test_err / test_bits,
        "secret_bits": secret,
        "key_rate_per_pulse": secret / pulses,
        "secret_key_rate_acquisition_bps": secret / sum(r.acquired_s for r in b),
        "ec_efficiency": disclosed / (key_bits * binary_entropy(qber_z)),
        "disclosed_bits": disclosed,
        "channel_uses": sum(r.channel_uses for r in b),
        "round_trips": sum(r.round_trips for r in b),
        "key_ids": [r.key_id for r in b if r.key_id is not None],
    }


def test_running_totals_equal_the_sums_over_every_block() -> None:
    results = [_result(i) for i in range(200)]
    summary = KeySummary("run-1", 1e9)
    for r in results:
        summary.add(r)
    totals = summary.totals()
    for key, value in _reference(results).items():
        assert totals[key] == value, key  # same additions in the same order: exact


def test_memory_per_block_is_one_key_id_at_most() -> None:
    """A long live run (10 blocks/s) must not keep a record per block: only key ids."""
    summary = KeySummary("run-1", 1e9)
    for i in range(3000):
        summary.add(_result(i))
    assert len(summary.key_ids) == 2000
    lists = [f.name for f in fields(summary) if isinstance(getattr(summary, f.name), list)]
    assert lists == ["key_ids"]
    # The sums are a fixed set of numbers whatever the number of blocks.
    sums = [getattr(summary.sums, f.name) for f in fields(BlockTotals)]
    assert all(isinstance(v, int | float) and math.isfinite(v) for v in sums)
    assert sys.getsizeof(summary.key_ids) < 2000 * 16  # pointers only, no per-block records


def test_empty_summary() -> None:
    totals = KeySummary("run-1", 1e9).totals()
    assert totals["blocks"] == 0 and totals["qber_z"] is None and totals["key_ids"] == []
    assert totals["ec_efficiency"] is None and totals["secret_key_rate_acquisition_bps"] == 0.0
    assert totals["secret_key_rate_bps"] is None  # no run time known
    assert totals["status"] == "degraded" and totals["reason"] == "no block was post-processed"


def test_every_finished_block_offers_the_heap_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_trim() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(node_base.HEAP, "maybe_trim", fake_trim)
    node = NodeBase.__new__(NodeBase)
    node.sequencer = None
    node.profile = StageProfile()
    node.block_done(None)
    node.block_done(None)
    assert len(calls) == 2
